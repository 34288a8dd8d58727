"""Formula = measured (shape, params, both MAC counters) over a parametrised grid of layer settings.

Truth here is computed independently of convcost.cost.formulas: output sizes come from the real forward pass,
and params/MACs are written out per kind as plain arithmetic (fvcore's style:
batch · cout · Hout · Wout · (cin/groups) · R · S).
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from convcost.results.comparison import Comparison, LayerResult
from convcost.run.comparison import compare
from convcost.spec.kinds import parse_compare

GEOMETRIES = [
    (stride, padding, dilation)
    for stride, padding, dilation in itertools.product((1, 2), (0, 1, "same"), (1, 2))
    if not (padding == "same" and stride > 1)
]
KERNELS = [(3, 3), (3, 2), (1, 5)]
CASES = [
    pytest.param(
        stride, padding, dilation, kernel, index, id=f"s{stride}-p{padding}-d{dilation}-k{kernel[0]}x{kernel[1]}"
    )
    for index, ((stride, padding, dilation), kernel) in enumerate(itertools.product(GEOMETRIES, KERNELS))
]


def _out(size: int, kernel: int, stride: int, padding: int | str, dilation: int) -> int:
    # written independently of convcost.cost.formulas: with "same", stride 1 keeps the size
    if padding == "same":
        return size
    assert isinstance(padding, int)
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _spec(**values: Any) -> Comparison:
    return compare(parse_compare(values), None)


def _assert_measured_equals_formula(layer: LayerResult) -> None:
    assert layer.ok, [check.message() for check in layer.checks if not check.ok]
    for stage in layer.stages:
        assert stage.output_shape == stage.output_shape_measured
        assert stage.params == stage.params_measured
        assert stage.macs == stage.macs_flop_counter == stage.macs_ptflops
        # ptflops' raw figure is MACs + one add per output element when the conv has a bias
        assert stage.ptflops_raw == stage.macs + stage.bias_adds
        # independent MAC count from the *measured* output shape
        n, k, h, w = stage.output_shape_measured or ()
        r, s = stage.kernel
        assert stage.macs == n * k * h * w * (stage.cin // stage.groups) * r * s


@pytest.mark.parametrize(("stride", "padding", "dilation", "kernel", "index"), CASES)
def test_every_kind_matches_its_formula(
    stride: int, padding: int | str, dilation: int, kernel: tuple[int, int], index: int
) -> None:
    bias = index % 2 == 0
    batch = (1, 4)[(index // 2) % 2]
    multiplier = (1, 2, 4)[index % 3]
    cin, cout, groups, height, width = 4, 6, 2, 11, 13
    r, s = kernel
    h_out = _out(height, r, stride, padding, dilation)
    w_out = _out(width, s, stride, padding, dilation)
    common = {"kernel": f"{r}x{s}", "stride": stride, "padding": padding, "dilation": dilation, "bias": bias,
              "batch": batch, "size": f"{height}x{width}", "multiplier": multiplier}  # fmt: skip

    result = _spec(cin=cin, cout=cout, groups=groups, vs="separable,grouped,spatial,pointwise", **common)
    layers = {layer.kind: layer for layer in result.layers}
    for layer in result.layers:
        _assert_measured_equals_formula(layer)
    b = int(bias)
    out = batch * h_out * w_out  # output positions over the batch
    mid = multiplier * cin
    assert layers["dense"].output_shape_measured == (batch, cout, h_out, w_out)
    assert layers["dense"].params == cout * cin * r * s + b * cout
    assert layers["dense"].macs == out * cout * cin * r * s
    # separable: depthwise cin → m·cin (R×S, groups=cin), then pointwise m·cin → cout
    assert layers["separable"].params == mid * r * s + b * mid + cout * mid + b * cout
    assert layers["separable"].macs == out * mid * r * s + out * cout * mid
    # grouped: cout × (cin/g) × R × S weights
    assert layers["grouped"].params == cout * (cin // groups) * r * s + b * cout
    assert layers["grouped"].macs == out * cout * (cin // groups) * r * s
    # spatial: R×1 conv cin → cin (strided/padded on rows only), then 1×S conv cin → cout
    rows_out = batch * h_out * width  # the R×1 stage leaves the width alone
    assert layers["spatial"].stages[0].output_shape_measured == (batch, cin, h_out, width)
    assert layers["spatial"].params == cin * cin * r + b * cin + cout * cin * s + b * cout
    assert layers["spatial"].macs == rows_out * cin * cin * r + out * cout * cin * s
    assert layers["spatial"].output_shape_measured == layers["dense"].output_shape_measured
    for ratio in result.ratios:
        assert ratio.shape_match == (ratio.vs != "pointwise" or (h_out, w_out) == layers["pointwise"].output_shape[2:])

    depthwise = _spec(cin=cin, cout=multiplier * cin, vs="depthwise,shared", **common)
    layers = {layer.kind: layer for layer in depthwise.layers}
    for layer in depthwise.layers:
        _assert_measured_equals_formula(layer)
    assert layers["depthwise"].params == mid * r * s + b * mid
    assert layers["depthwise"].macs == out * mid * r * s
    # shared: one R×S kernel per multiplier slot for all channels (weights ÷ cin), per-channel bias, same MACs
    assert layers["shared"].params == multiplier * r * s + b * mid
    assert layers["shared"].macs == layers["depthwise"].macs
    assert layers["shared"].stages[0].stored_weight_shape == (multiplier, 1, r, s)
    assert layers["shared"].stages[0].weight_shape == (mid, 1, r, s)
    assert depthwise.ok and result.ok == all(ratio.shape_match for ratio in result.ratios)


@pytest.mark.parametrize("multiplier", [1, 2, 4])
@pytest.mark.parametrize(("norm", "act"), [("none", "none"), ("batch", "relu"), ("batch", "relu6"), ("none", "relu")])
def test_norm_and_act_count_params_and_other_ops_never_macs(multiplier: int, norm: str, act: str) -> None:
    cin, cout, size = 3, 5, 8
    result = _spec(cin=cin, cout=cout, kernel=3, padding=1, size=size, multiplier=multiplier, norm=norm, act=act,
                   bias=False)  # fmt: skip
    separable = result.alternatives[0]
    _assert_measured_equals_formula(separable)
    mid = multiplier * cin
    per_element = (2 if norm == "batch" else 0) + (1 if act != "none" else 0)
    bn = 2 if norm == "batch" else 0  # BatchNorm weight + bias per channel (running stats are buffers)
    assert separable.params == mid * 9 + bn * mid + cout * mid + bn * cout
    assert separable.macs == size * size * (mid * 9 + cout * mid)
    assert separable.other_ops == size * size * (mid + cout) * per_element
    assert result.dense.other_ops == size * size * cout * per_element


def test_blog_figures() -> None:
    result = _spec(cin=8, cout=64, kernel=3)
    dense, separable = result.dense, result.alternatives[0]
    assert dense.params == 4_672  # 64*8*9 + 64 = 4,608 + 64
    assert dense.macs == 73_156_608  # 8*64*9*126*126
    assert separable.params == 656  # (8*9 + 8) + (64*8 + 64) = 80 + 576
    assert separable.macs == 9_271_584  # 8*9*126*126 + 64*8*126*126 = 1,143,072 + 8,128,512
    assert separable.flops == 2 * 9_271_584
    assert separable.bias_adds == (8 + 64) * 126 * 126
    ratio = result.ratios[0]
    assert ratio.macs == pytest.approx(73_156_608 / 9_271_584)
    assert ratio.textbook == pytest.approx(1 / (1 / 64 + 1 / 9))  # 7.890...
    assert f"{ratio.textbook:.2f}" == "7.89"
    assert ratio.bound == 9
    assert result.ok


@pytest.mark.parametrize("multiplier", [1, 2, 4])
def test_textbook_ratio_follows_the_multiplier(multiplier: int) -> None:
    result = _spec(cin=32, cout=128, kernel=3, padding=1, size=16, multiplier=multiplier, bias=False)
    ratio = result.ratios[0]
    # dense 128·32·9 per position; separable m·32·9 + 128·m·32 per position
    assert ratio.macs == pytest.approx((128 * 32 * 9) / (multiplier * 32 * 9 + 128 * multiplier * 32))
    assert ratio.textbook == pytest.approx(1 / (multiplier / 128 + multiplier / 9))
    assert ratio.textbook == pytest.approx(ratio.macs)  # equal output sizes: the paper's formula is exact
    assert ratio.bound == pytest.approx(9 / multiplier)


def test_tutorial_block_with_padding() -> None:
    result = _spec(cin=32, cout=128, kernel=3, padding=1, size=64, bias=False)
    assert result.dense.output_shape_measured == (1, 128, 64, 64)
    assert result.dense.macs == 128 * 32 * 9 * 64 * 64  # 150,994,944
    assert result.alternatives[0].macs == 32 * 9 * 64 * 64 + 128 * 32 * 64 * 64  # 1,179,648 + 16,777,216
    assert result.ok


def test_padded_pointwise_is_caught_as_a_shape_mismatch() -> None:
    result = _spec(cin=32, cout=64, kernel=3, padding=1, size=64, pointwise={"padding": 1})
    separable = result.alternatives[0]
    assert separable.output_shape_measured == (1, 64, 66, 66)  # 64 + 2*1 - 1 + 1
    assert result.dense.output_shape_measured == (1, 64, 64, 64)
    assert not result.ratios[0].shape_match
    assert not result.ok
    assert result.failures == ["separable: output shape 1×64×66×66 differs from dense 1×64×64×64"]
    assert "overridden: padding=1" in separable.stages[1].notes


def test_same_padding_with_even_kernel_matches_torch() -> None:
    # nn.Conv2d puts the odd padding pixel at the bottom/right; the formula must agree with the real output
    result = _spec(cin=2, cout=4, kernel="4x2", padding="same", dilation=3, size="9x7", vs="separable,spatial")
    for layer in result.layers:
        _assert_measured_equals_formula(layer)
        assert layer.output_shape_measured == (1, 4, 9, 7)
