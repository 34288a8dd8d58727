"""Property tests: for any valid geometry, the pure formulas agree with torch's own shape and FLOP logic.

Runs on the meta device (shapes without data), so hundreds of random layers cost well under a second each.
"""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

from convcost.cost import formulas, ops
from convcost.cost.formulas import ConvStage
from convcost.run import build


@st.composite
def stages(draw: st.DrawFn) -> tuple[ConvStage, tuple[int, int], int]:
    groups = draw(st.integers(1, 4))
    cin = groups * draw(st.integers(1, 3))
    cout = groups * draw(st.integers(1, 3))
    kernel = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    same = stride == (1, 1) and draw(st.booleans())
    padding: formulas.Padding = "same" if same else (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    stage = ConvStage("conv", cin, cout, kernel, stride, padding, dilation, groups, bias=draw(st.booleans()))
    extent = [d * (k - 1) + 1 for k, d in zip(kernel, dilation, strict=True)]
    size = (draw(st.integers(extent[0], extent[0] + 20)), draw(st.integers(extent[1], extent[1] + 20)))
    return stage, size, draw(st.integers(1, 3))


@settings(max_examples=80, deadline=None)
@given(stages())
def test_formulas_agree_with_torch_on_meta(case: tuple[ConvStage, tuple[int, int], int]) -> None:
    stage, size, batch = case
    module = build.conv(stage).to("meta")
    tensor = torch.empty(batch, stage.cin, *size, device="meta")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        output = module(tensor)
    out_h, out_w = formulas.output_size(stage, size)
    assert tuple(output.shape) == (batch, stage.cout, out_h, out_w)
    cost = ops.cost(ops.ConvOp.from_stage(stage, (batch, stage.cin, *size)))
    assert counter.get_total_flops() == 2 * cost.macs
    assert sum(p.numel() for p in module.parameters()) == cost.params
    assert tuple(module.weight.shape) == formulas.weight_shape(stage)
