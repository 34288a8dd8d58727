"""Both MAC counters in the traced forward pass: every aten op's figure by each counter's own formula, per op.

One ``TorchDispatchMode`` runs during :func:`convcost.run.trace.trace` and calls FlopCounterMode's and ptflops'
own registries (``torch.utils.flop_counter.flop_registry``, ``ptflops.aten_ops.ATEN_OPS_MAPPING``) exactly as
each counter calls them:

* FlopCounterMode skips the metadata ops (``size``, ``stride``, …), first tries an op's CompositeImplicitAutograd
  decomposition (inside the mode, so the pieces are counted instead), then counts ``formula(*args, **kwargs,
  out_val=out)`` for the op's overload packet;
* ptflops never decomposes: it sees the op as dispatched and counts ``formula(args, out as a tuple)`` for the
  packets it maps (its ignored-op list is empty, as ``get_flops_aten`` is called); the pieces of a decomposition
  that FlopCounterMode asks for are not ptflops' ops, so they are not counted for it.

The figures go to the innermost open :class:`AtenCounts` (a leaf module's call or a functional op; a container keeps
what none of its ops claimed); :mod:`convcost.run.counting` turns them into checks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from convcost.errors import MeasurementError

_aten = torch.ops.aten
# the ops FlopCounterMode's __torch_dispatch__ hands back untouched (metadata, never counted)
_METADATA = {
    _aten.sym_is_contiguous.default,
    _aten.is_contiguous.default,
    _aten.is_contiguous.memory_format,
    _aten.is_strides_like_format.default,
    _aten.is_non_overlapping_and_dense.default,
    _aten.size.default,
    _aten.sym_size.default,
    _aten.stride.default,
    _aten.sym_stride.default,
    _aten.storage_offset.default,
    _aten.sym_storage_offset.default,
    _aten.numel.default,
    _aten.sym_numel.default,
    _aten.dim.default,
    torch.ops.prim.layout.default,
}
# aten ops that do multiply-accumulates one counter or both may not map: when one of them runs inside an op, that
# counter cannot see all of the op (the fused CPU attention kernels are in neither registry, baddbmm not in ptflops')
_MAC_OPS_NOT_EVERYWHERE = {
    _aten.baddbmm, _aten.addbmm, _aten.mv, _aten.addmv, _aten.dot, _aten.vdot, _aten._scaled_mm,
    _aten._scaled_dot_product_flash_attention_for_cpu, _aten._scaled_dot_product_efficient_attention,
    _aten._scaled_dot_product_flash_attention, _aten._scaled_dot_product_cudnn_attention,
    _aten._scaled_dot_product_fused_attention_overrideable, _aten._flash_attention_forward,
    _aten._efficient_attention_forward, _aten._native_multi_head_attention, _aten._transformer_encoder_layer_fwd,
    _aten.cudnn_convolution, _aten.convolution_overrideable, _aten._slow_conv2d_forward, _aten.mkldnn_convolution,
    _aten.slow_conv3d_forward, _aten.slow_conv_dilated2d, _aten.slow_conv_dilated3d, _aten.slow_conv_transpose2d,
    _aten.slow_conv_transpose3d, _aten.mkldnn_rnn_layer, _aten._thnn_fused_lstm_cell, _aten._thnn_fused_gru_cell,
}  # fmt: skip
# aten ops that only move, copy, index or fill data: a module that ran nothing else did no arithmetic
_DATA_MOVEMENT = {
    _aten.view, _aten._unsafe_view, _aten.reshape, _aten._reshape_alias, _aten.permute, _aten.transpose, _aten.t,
    _aten.expand, _aten.expand_as, _aten.slice, _aten.select, _aten.unsqueeze, _aten.squeeze, _aten.clone,
    _aten.contiguous, _aten.copy_, _aten._to_copy, _aten.cat, _aten.stack, _aten.split, _aten.split_with_sizes,
    _aten.chunk, _aten.unbind, _aten.narrow, _aten.flatten, _aten.unflatten, _aten.as_strided, _aten.alias,
    _aten.detach, _aten.lift_fresh, _aten.index, _aten.index_select, _aten.gather, _aten.roll, _aten.flip,
    _aten.constant_pad_nd, _aten.empty, _aten.empty_like, _aten.new_empty, _aten.empty_strided, _aten.zeros,
    _aten.zeros_like, _aten.ones, _aten.ones_like, _aten.full, _aten.full_like, _aten.new_zeros, _aten.new_ones,
    _aten.new_full, _aten.fill_, _aten.zero_, _aten.arange, _aten.pixel_shuffle, _aten.pixel_unshuffle,
    _aten.repeat, _aten.movedim, _aten.view_as, _aten.channel_shuffle, _aten.native_channel_shuffle,
}  # fmt: skip
FLOP_COUNTER, PTFLOPS = "FlopCounterMode", "ptflops"  # as convcost.results.model names them


@dataclass
class AtenCounts:
    """What both counters counted for one traced op: FlopCounterMode's FLOPs and ptflops' raw figure."""

    flop_counter_flops: int = 0
    ptflops_raw: int = 0
    blind: set[str] = field(default_factory=set)  # the counters that met an aten op with MACs they do not map
    arithmetic: bool = field(default=False, compare=False)  # an aten op ran that does more than move data

    def add(self, other: AtenCounts) -> None:
        self.flop_counter_flops += other.flop_counter_flops
        self.ptflops_raw += other.ptflops_raw
        self.blind |= other.blind
        self.arithmetic |= other.arithmetic

    @property
    def flop_counter_macs(self) -> int:
        return self.flop_counter_flops // 2


@contextlib.contextmanager
def _failing_as(counter: str, packet: Any) -> Iterator[None]:
    """A counter's formula that fails is the counter's failure (exit 3), never the model's nor a wrong number."""
    try:
        yield
    except Exception as error:
        raise MeasurementError(f"{counter} failed: {packet}: {type(error).__name__}: {error}") from error


class CounterFigures(TorchDispatchMode):  # type: ignore[no-untyped-call]
    """Each aten op's figure by both counters' formulas, added to the innermost open :class:`AtenCounts`."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        from ptflops.aten_ops import ATEN_OPS_MAPPING
        from torch.utils.flop_counter import flop_registry

        self.flop_registry: dict[Any, Any] = dict(flop_registry)
        self.ptflops_ops: dict[Any, Any] = dict(ATEN_OPS_MAPPING)
        self.mac_ops = {*self.flop_registry, *self.ptflops_ops, *_MAC_OPS_NOT_EVERYWHERE}
        self.open: list[AtenCounts] = []
        self.unattributed = AtenCounts()  # work outside every traced op and container (should be none)
        self.total = AtenCounts()  # everything, as the real counters would total it
        self.decomposing = 0  # >0 inside a decomposition FlopCounterMode asked for: not ptflops' ops

    def begin(self) -> AtenCounts:
        figures = AtenCounts()
        self.open.append(figures)
        return figures

    def end(self) -> AtenCounts:
        return self.open.pop()

    def current(self) -> AtenCounts:
        """The innermost open figures: the op or container being run, else the unattributed ones."""
        return self.open[-1] if self.open else self.unattributed

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        # FlopCounterMode counts the higher-order ops (cond, triton kernels); an eager forward has none
        if func in _METADATA or isinstance(func, torch._ops.HigherOrderOperator):
            return NotImplemented
        packet = func._overloadpacket
        # as FlopCounterMode: its registry is keyed by packets, so this asks of every overload
        if func not in self.flop_registry and func is not torch.ops.prim.device.default:
            self.decomposing += 1
            try:
                with self:
                    decomposed = func.decompose(*args, **kwargs)
            finally:
                self.decomposing -= 1
            if decomposed is not NotImplemented:
                self._ptflops(packet, args, decomposed)
                return decomposed
        if packet not in _DATA_MOVEMENT:
            self.current().arithmetic = self.total.arithmetic = True
        out = func(*args, **kwargs)
        if packet in self.flop_registry:
            with _failing_as("FlopCounterMode", packet):
                flops = int(self.flop_registry[packet](*args, **kwargs, out_val=out))
            self.current().flop_counter_flops += flops
            self.total.flop_counter_flops += flops
        elif packet in self.mac_ops:
            self.current().blind.add(FLOP_COUNTER)
        self._ptflops(packet, args, out)
        return out

    def _ptflops(self, packet: Any, args: Any, out: Any) -> None:
        if self.decomposing:
            return
        if packet not in self.ptflops_ops:
            if packet in self.mac_ops:
                self.current().blind.add(PTFLOPS)
            return
        with _failing_as("ptflops", packet):
            raw = int(self.ptflops_ops[packet](args, out if isinstance(out, tuple) else (out,)))
        self.current().ptflops_raw += raw
        self.total.ptflops_raw += raw
