"""Both counters in one pass (convcost.run.dispatch), complete vs ok, "not seen by", and the meta path.

The real FlopCounterMode and ptflops (aten backend), each run separately on the model as before, stay the
independent reference: the figures the traced pass attributes to its ops must add up to theirs exactly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from typer.testing import CliRunner

from convcost.cli import app
from convcost.cost.ops import LinearOp
from convcost.errors import UsageError
from convcost.report.model import check_line
from convcost.results.model import Call, op_result
from convcost.run.counting import count_and_check
from convcost.run.dispatch import AtenCounts
from convcost.run.measure import count_flop_counter, count_ptflops
from convcost.run.model import evaluate_import, evaluate_plan
from convcost.run.model_build import model_module
from convcost.run.trace import Trace, trace, without_fast_paths
from convcost.spec.model import load_model
from tests import models_for_tests

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


class Attention(nn.Module):
    """q, k, v from one linear, 2 heads of 4, F.scaled_dot_product_attention (fused on the CPU)."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(8, 24)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (t.unflatten(-1, (2, 4)).transpose(1, 2) for t in self.qkv(x).chunk(3, dim=-1))
        return F.scaled_dot_product_attention(q, k, v)


class Baddbmm(nn.Module):
    """torch.baddbmm on a weight of its own: FlopCounterMode counts it, ptflops' aten backend does not map it."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(2, 8, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(torch.zeros(x.shape[0], x.shape[1], 4), x, self.weight)


class Doubler(nn.Module):
    """A leaf type with no formula and no MACs: not counted, and invisible to both counters."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.special.bessel_j0(x)


def attention() -> Attention:
    return Attention()


def doubled() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 4, 3), Doubler())


def _cases() -> list[tuple[str, nn.Module, tuple[int, ...]]]:
    cases = []
    for config, size in (("mobilenet_v1.yaml", "64"), ("mobilenet_v2.yaml", "64")):
        plan = load_model(str(CONFIGS / config), size=size)
        cases.append((config, model_module(plan).eval(), plan.input_shape))
    factories: list[tuple[str, tuple[int, ...]]] = [
        ("mobilenet_v2", (1, 3, 64, 64)), ("torchvision_mobilenet_v2", (2, 3, 32, 32)), ("attention", (1, 5, 16)),
        ("scaled", (1, 3, 6, 6)), ("weight_normed", (1, 3, 16, 16)), ("unused", (1, 3, 4, 4)),
        ("functional", (1, 5, 16)), ("tiny_residual", (1, 3, 6, 6)), ("shapes_1d_3d", (1, 4, 16)),
        ("functional_conv", (1, 3, 8, 8)),
    ]  # fmt: skip
    for name, shape in factories:
        cases.append((name, getattr(models_for_tests, name)().eval(), shape))
    cases += [("sdpa", Attention().eval(), (2, 5, 8)), ("baddbmm", Baddbmm().eval(), (2, 5, 8))]
    return cases


@pytest.mark.parametrize(("name", "module", "shape"), _cases(), ids=[case[0] for case in _cases()])
def test_one_pass_gives_the_totals_of_both_real_counters(name: str, module: nn.Module, shape: tuple[int, ...]) -> None:
    tensor = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    traced = trace(module, tensor)
    with without_fast_paths():  # the real counters, each on its own forward pass, as convcost ran them before
        flop_counter, _ = count_flop_counter(module, tensor)
        ptflops_raw = count_ptflops(module, tensor)
    assert traced.counted.flop_counter_macs == flop_counter
    assert traced.counted.ptflops_raw == ptflops_raw
    # every figure is attributed: the calls' figures and the unattributed rest add up to the totals
    attributed = AtenCounts(sum(call.flop_counter_flops or 0 for call in traced.calls),
                         sum(call.ptflops_raw or 0 for call in traced.calls))  # fmt: skip
    attributed.add(traced.unattributed)
    assert attributed == traced.counted
    assert traced.unattributed == AtenCounts()  # none of these models does MAC work outside a traced op


def test_sdpa_on_the_cpu_is_seen_by_no_counter_so_the_result_is_incomplete_not_checked() -> None:
    result = evaluate_import("tests.test_counters:attention", (5, 8), batch=2, model=Attention())
    by_name = {op.name: op for op in result.ops}
    # qkv: 2 × 5 tokens × 8 → 24: 2*5*8*24 = 1,920 MACs; ptflops adds 2*5*24 = 240 bias adds: 2,160
    assert (by_name["qkv"].macs, by_name["qkv"].macs_flop_counter, by_name["qkv"].ptflops_raw) == (1920, 1920, 2160)
    assert by_name["qkv"].seen_by == ["FlopCounterMode", "ptflops"]
    # the fused CPU kernel (_scaled_dot_product_flash_attention_for_cpu) is in neither registry: 0 and 0
    sdpa = next(op for op in result.ops if op.name.endswith("scaled_dot_product_attention"))
    assert (sdpa.macs_flop_counter, sdpa.ptflops_raw, sdpa.seen_by) == (0, 0, [])
    assert sdpa.blind_to == ("FlopCounterMode", "ptflops")  # the dispatch saw the kernel neither maps
    if sdpa.counted:  # a formula for attention: its MACs are ours alone, marked as not seen by either counter
        assert sdpa.not_seen_by == ["FlopCounterMode", "ptflops"]
    else:  # no formula yet: three figures that agree on the wrong total must not get a ✓
        assert result.ok and not result.complete
        line = check_line(result).plain
        assert "✓" not in line and "incomplete: 1 op not counted" in line
    data = json.loads(json.dumps(result.to_dict()))
    assert data["complete"] is result.complete and "seen_by" in data["layers"][0]["ops"][0]


def test_sdpa_on_meta_runs_the_math_path_that_both_counters_see() -> None:
    result = evaluate_import("tests.test_counters:attention", (5, 8), batch=2, model=Attention(), meta=True)
    sdpa = next(op for op in result.ops if op.name.endswith("scaled_dot_product_attention"))
    # QK^T: 2 batch × 2 heads × 5 × 5 × 4 = 400; AV: the same 400: 800 MACs, as bmm for both counters
    assert (sdpa.macs_flop_counter, sdpa.ptflops_raw) == (800, 800)
    assert sdpa.seen_by == ["FlopCounterMode", "ptflops"]
    assert result.environment.device == "meta"


def test_baddbmm_is_seen_by_flop_counter_mode_only() -> None:
    result = evaluate_import("tests.test_counters:baddbmm", (5, 8), batch=2, model=Baddbmm())
    [op] = [op for op in result.ops if op.macs_flop_counter]
    # 2 batches of (5×8) @ (8×4): 2*5*8*4 = 320 MACs; ptflops' aten mapping has no baddbmm
    assert (op.macs_flop_counter, op.ptflops_raw, op.seen_by) == (320, 0, ["FlopCounterMode"])
    if op.counted:
        assert op.macs == 320 and op.not_seen_by == ["ptflops"] and result.ok
    else:  # a counter saw MACs that no formula has: a failed check
        assert not result.ok and any("FlopCounterMode" in failure for failure in result.failures)


def _counted(macs_flop_counter: int, ptflops_raw: int, blind_to: tuple[str, ...] = ()) -> tuple[list[Any], Trace]:
    op = LinearOp("fc", (2, 16), 16, 4, True)  # 2*16*4 = 128 MACs, 2*4 = 8 bias adds
    call = Call(op, (2, 4), 68, "fc", "fc", flop_counter_flops=2 * macs_flop_counter, ptflops_raw=ptflops_raw,
                blind_to=blind_to)  # fmt: skip
    traced = Trace([call], (2, 4), counted=AtenCounts(2 * macs_flop_counter, ptflops_raw))
    return [(call, op_result(op, call))], traced


def test_an_op_a_counter_cannot_see_is_marked_not_failed() -> None:
    results, traced = _counted(128, 0)
    found, _, _ = count_and_check(traced, "model", results, [])
    assert all(check.ok for check in found)
    assert results[0][1].not_seen_by == ["ptflops"] and results[0][1].seen_by == ["FlopCounterMode"]
    # ours over the ops ptflops saw (none) = its total (0)
    assert [check.expected for check in found if check.quantity == "MACs (ptflops)"] == [0]


def test_an_op_a_counter_sees_only_part_of_is_marked_and_left_out_of_its_total() -> None:
    # e.g. attention: FlopCounterMode counts the projections (here 100 MACs) but not the fused kernel
    results, traced = _counted(100, 136, ("FlopCounterMode",))
    found, flop_counter, _ = count_and_check(traced, "model", results, [])
    assert all(check.ok for check in found) and flop_counter == 100
    assert results[0][1].not_seen_by == ["FlopCounterMode"] and results[0][1].seen_by == ["ptflops"]
    # FlopCounterMode: ours over the ops it saw all of (none) = its total less the partly seen op's 100
    assert [(check.expected, check.found) for check in found if "FlopCounterMode" in check.quantity] == [(0, 0)]


def test_a_counter_that_sees_other_macs_fails_the_op_by_name() -> None:
    results, traced = _counted(128, 136 + 1)  # ptflops: 128 MACs + 8 bias adds, and one more
    found, _, _ = count_and_check(traced, "model", results, [])
    assert [check.message() for check in found if not check.ok] == [
        "fc: MACs (ptflops): formula 128, measured 129",
        "model: MACs (ptflops): formula 128, measured 129",
    ]


def test_work_outside_every_traced_op_fails_a_check() -> None:
    results, traced = _counted(128, 136)
    traced.unattributed = AtenCounts(10, 0)
    traced.counted.add(traced.unattributed)
    found, _, _ = count_and_check(traced, "model", results, [])
    assert [check.quantity for check in found if not check.ok] == ["MACs (FlopCounterMode)",
                                                                   "MACs outside every traced op"]  # fmt: skip


def test_meta_path_counts_what_the_real_run_counts() -> None:
    plan = load_model(str(CONFIGS / "mobilenet_v2.yaml"), size="64")
    real, meta = evaluate_plan(plan, "mobilenet_v2"), evaluate_plan(plan, "mobilenet_v2", meta=True)
    assert meta.ok and real.ok and meta.complete
    assert meta.total.to_dict() == real.total.to_dict()
    assert [op.to_dict() for op in meta.ops] == [op.to_dict() for op in real.ops]
    assert meta.environment.device == "meta" and real.environment.device == "cpu"


def test_meta_path_never_touches_the_users_instance() -> None:
    model = models_for_tests.tiny_residual()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    result = evaluate_import("tiny", (3, 6, 6), model=model, meta=True)
    assert result.ok and model.training
    assert all(tensor.device.type == "cpu" for tensor in model.state_dict().values())
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())


def test_meta_refuses_latency() -> None:
    from convcost.run.context import RunContext
    from convcost.run.latency import LatencySettings

    context = RunContext(threads=1, latency=LatencySettings(rounds=1))
    with pytest.raises(UsageError, match=r"^--meta: .*--latency"):
        evaluate_import("tiny", (3, 6, 6), model=models_for_tests.tiny_residual(), context=context, meta=True)


def test_cli_meta_with_latency_exits_2_naming_the_flag() -> None:
    result = CliRunner().invoke(app, ["model", "mobilenet_v1", "--meta", "--latency"])
    assert result.exit_code == 2, result.output
    assert "--meta" in result.output and "Traceback" not in result.output


def test_cli_incomplete_exits_0_unless_complete_is_required() -> None:
    arguments = ["model", "tests.test_counters:doubled", "--input", "3x6x6"]
    plain = CliRunner().invoke(app, arguments)
    assert plain.exit_code == 0, plain.output
    assert "incomplete: 1 op not counted" in plain.output and "✓" not in plain.output
    strict = CliRunner().invoke(app, [*arguments, "--require-complete", "-f", "json"])
    assert strict.exit_code == 1, strict.output
    data = json.loads(strict.output)
    assert (data["ok"], data["complete"]) == (True, False)


class Counted(nn.Module):
    """Counts its forward passes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.conv(x)


@pytest.mark.parametrize("meta", [False, True])
def test_counting_runs_the_model_once(meta: bool) -> None:
    model = Counted()
    result = evaluate_import("counted", (3, 8, 8), model=model, meta=meta)
    # 4 × 6 × 6 outputs × 3 × 3 × 3 = 3,888 MACs, by formula and by both counters, from one forward pass
    assert result.ok and result.total.macs == result.total.macs_flop_counter == 3888
    assert model.calls == (0 if meta else 1)  # on meta it is a copy that runs
