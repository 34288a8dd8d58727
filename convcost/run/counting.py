"""The checks of a traced network: each op's figures by formula against what its call measured and what both
counters counted for it in the traced pass (:mod:`convcost.run.dispatch`), then the network's totals."""

from __future__ import annotations

from typing import Any, Protocol

from convcost.results.comparison import Check, checks
from convcost.results.model import FLOP_COUNTER, PTFLOPS, Call, OpResult
from convcost.run.dispatch import AtenCounts


class Traced(Protocol):
    """What :func:`count_and_check` needs of a :class:`convcost.run.trace.Trace`."""

    counted: AtenCounts
    unattributed: AtenCounts


def count_and_check(
    traced: Traced,
    subject: str,
    results: list[tuple[Call | None, OpResult]],
    figures: list[tuple[str, Any, Any]],
    note: str = "",
) -> tuple[list[Check], int, int]:
    """The one count path of every network, a compare stage as a model: each op's figures by formula against what
    its call measured and what each counter counted for it in the traced pass (only the checks that fail are
    kept), then the ``subject``'s checks, ``figures`` and its MACs against both counters' totals. Nothing runs
    again: the counters' figures come from the trace (:mod:`convcost.run.dispatch`). Returns the checks and the
    counters' totals (FlopCounterMode's MACs, ptflops' raw figure)."""
    found: list[Check] = []
    for call, op in results:
        if call is None:
            continue
        own: list[tuple[str, Any, Any]] = []
        if op.counted and op.output_shape_measured is not None:
            own.append(("output shape", op.output_shape, op.output_shape_measured))
        # the planned op's weight by formula against the built module's; an imported module's op is read from its
        # attributes (kernel_size, in_channels...), so there it only catches a weight that disagrees with them
        if op.weight_shape is not None and call.weight_shape is not None:
            own.append(("weight shape", op.weight_shape, call.weight_shape))
        if op.params_measured is not None:
            own.append(("params", op.params, op.params_measured))
        if op.counted:  # where a counter saw all of the op, its MACs are ours; else op.not_seen_by says so
            if op.macs_flop_counter and FLOP_COUNTER not in op.blind_to:
                own.append(("MACs (FlopCounterMode)", op.own_macs, op.macs_flop_counter))
            if op.ptflops_raw and PTFLOPS not in op.blind_to:
                own.append(("MACs (ptflops)", op.own_macs, op.macs_ptflops))
        found += [check for check in checks(op.name, own) if not check.ok]
    totals = flop_counter, ptflops_raw = traced.counted.flop_counter_macs, traced.counted.ptflops_raw
    ran = [op for call, op in results if call is not None]
    if len(ran) == len(results):  # ours over the ops each counter saw: an op it cannot see is marked, not failed
        seen_flop_counter = sum(op.own_macs for op in ran if FLOP_COUNTER in op.seen_by)
        seen_ptflops = [op for op in ran if PTFLOPS in op.seen_by]
        macs, bias_adds = sum(op.own_macs for op in seen_ptflops), sum(op.ptflops_folded for op in seen_ptflops)
        # what a counter counted in an op it partly cannot see is that op's, not compared: taken off its total
        flop_counter -= sum(op.macs_flop_counter or 0 for op in ran if FLOP_COUNTER in op.blind_to)
        ptflops_raw -= sum(op.ptflops_raw or 0 for op in ran if PTFLOPS in op.blind_to)
    else:  # the built module is not the one planned: the plan's figures against the totals
        seen_flop_counter = macs = sum(op.own_macs for _, op in results)
        bias_adds = sum(op.bias_adds for _, op in results)
    own_checks = checks(subject, figures, (seen_flop_counter, flop_counter, ptflops_raw, bias_adds), note, macs)
    said = {check.message() for check in own_checks}  # a compare stage's one conv is named as the stage: said once
    found = [check for check in found if check.message() not in said] + own_checks
    unattributed = traced.unattributed
    if unattributed.flop_counter_flops or unattributed.ptflops_raw:
        found.append(Check(subject, "MACs outside every traced op", 0, unattributed.flop_counter_macs
                           or unattributed.ptflops_raw, "counted by FlopCounterMode "
                           f"({unattributed.flop_counter_macs:,}) or ptflops ({unattributed.ptflops_raw:,}) "
                           "in aten ops that no traced op ran"))  # fmt: skip
    return found, *totals
