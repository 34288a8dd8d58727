"""Whole models: the shipped MobileNets and import paths, against plain torch references counted by hooks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from convcost.errors import SpecError, UsageError
from convcost.results.model import ModelResult
from convcost.run.model import evaluate_import, evaluate_plan
from convcost.run.source import evaluate_source
from convcost.spec.model import load_model, make_divisible, plan_document
from convcost.spec.yamlio import loads
from tests import models_for_tests

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def hook_count(model: nn.Module, shape: tuple[int, ...]) -> tuple[int, int]:
    """(params, MACs) of a plain torch model: MACs from the shapes each conv and linear sees in a forward pass."""
    macs = 0

    def hook(module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal macs
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            macs += output.numel() * (module.in_channels // module.groups) * kh * kw
        elif isinstance(module, nn.Linear):
            macs += output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model.eval()(torch.zeros(shape))
    for handle in handles:
        handle.remove()
    return sum(p.numel() for p in model.parameters()), macs


def dense_reference(model: nn.Module) -> nn.Module:
    """The model with every depthwise conv (and what follows it up to the next 1×1 conv) made a dense conv."""
    for module in model.modules():
        if not isinstance(module, nn.Sequential):
            continue
        children = list(module.named_children())
        for index, (name, child) in enumerate(children):
            seq = child if isinstance(child, nn.Sequential) else None
            conv = seq[0] if seq is not None and isinstance(seq[0], nn.Conv2d) else None
            if conv is None or conv.groups == 1 or index + 1 >= len(children):
                continue
            after = children[index + 1][1]
            assert isinstance(after, nn.Sequential) and isinstance(after[0], nn.Conv2d)
            cout = after[0].out_channels
            dense = nn.Conv2d(conv.in_channels, cout, conv.kernel_size, conv.stride, conv.padding, bias=False)
            setattr(module, name, nn.Identity())
            setattr(module, children[index + 1][0], nn.Sequential(dense, *list(after)[1:]))
    return model


@pytest.fixture(scope="module")
def v1() -> ModelResult:
    return evaluate_plan(load_model(str(CONFIGS / "mobilenet_v1.yaml")), "mobilenet_v1.yaml")


@pytest.fixture(scope="module")
def v2() -> ModelResult:
    return evaluate_plan(load_model(str(CONFIGS / "mobilenet_v2.yaml")), "mobilenet_v2.yaml")


def test_mobilenet_v1_at_224_matches_the_torch_reference(v1: ModelResult) -> None:
    params, macs = hook_count(models_for_tests.mobilenet_v1(), (1, 3, 224, 224))
    assert (v1.total.params, v1.total.macs) == (params, macs)
    # the published figures: 4.2M parameters, 569M mult-adds (Howard et al. 2017, Table 8)
    assert params == 4_231_976 and round(macs / 1e6) == 569
    assert v1.ok, v1.failures
    assert v1.total.macs_flop_counter == v1.total.macs_ptflops == v1.total.macs
    assert v1.total.ptflops_raw == v1.total.macs + 1000  # the classifier's 1,000 bias adds
    layers = {layer.name: layer.params for layer in v1.layers}
    # conv1 3·32·9 + 2·32 (batchnorm) = 928; sep1 (32·9 + 64) + (32·64 + 128) = 2,528;
    # sep9 (1024·9 + 2048) + (1024·1024 + 2048) = 1,061,888; fc 1024·1000 + 1000 = 1,025,000
    assert [layers[name] for name in ("conv1", "sep1", "sep9", "fc")] == [928, 2_528, 1_061_888, 1_025_000]
    assert [layer.name for layer in v1.layers][7:12] == [f"sep7.{n}" for n in range(1, 6)]
    assert v1.output_shape == v1.output_shape_measured == (1, 1000)


def test_mobilenet_v1_dense_equivalent_is_the_papers_full_conv_network(v1: ModelResult) -> None:
    params, macs = hook_count(dense_reference(models_for_tests.mobilenet_v1()), (1, 3, 224, 224))
    assert (v1.dense_equivalent.params, v1.dense_equivalent.macs) == (params, macs)
    # Table 4 of the paper: "Conv MobileNet" 29.3M parameters, 4866M mult-adds
    assert round(params / 1e5) == 293 and round(macs / 1e6) == 4867
    assert len(v1.dense_equivalent.pairs) == 13


def test_mobilenet_v1_by_kind(v1: ModelResult) -> None:
    shares = {share.kind: share for share in v1.by_kind}
    assert shares["1×1 conv"].ops == 13 and shares["depthwise conv"].ops == 13
    # the pointwise convs at 224: five doubling ones (32→64 on 112², 64→128 on 56², ... 512→1024 on 7²) each
    # 25,690,112 MACs, eight square ones (128² on 56², 256² on 28², 5 × 512² on 14², 1024² on 7²) each 51,380,224:
    # 5·25,690,112 + 8·51,380,224 = 539,492,352, the paper's 94.86% of 569M (Table 2)
    assert shares["1×1 conv"].macs == 539_492_352
    # 3×3 depthwise weights, no bias: 9·(32 + 64 + 2·128 + 2·256 + 6·512 + 1024) = 9·4,960 = 44,640
    assert shares["depthwise conv"].params == 44_640
    assert shares["1×1 conv"].macs_share > 0.94  # the paper: 95% of the mult-adds are in 1×1 convs
    assert v1.by_kind[0].kind == "1×1 conv"  # most MACs first


def test_mobilenet_v2_at_224_matches_the_torch_reference(v2: ModelResult) -> None:
    params, macs = hook_count(models_for_tests.mobilenet_v2(), (1, 3, 224, 224))
    assert (v2.total.params, v2.total.macs) == (params, macs)
    # the paper rounds to 3.4M and 300M; torchvision's reference implementation has 3,504,872 params
    assert params == 3_504_872 and round(macs / 1e6) == 301
    assert v2.ok, v2.failures
    adds = [op for op in v2.ops if op.kind == "add"]
    assert len(adds) == 10  # blocks with stride 1 and equal channels: 1+2+3+2+2
    assert len(v2.dense_equivalent.pairs) == 17


def test_import_path_matches_the_model_file_at_96() -> None:
    from_file = evaluate_plan(load_model(str(CONFIGS / "mobilenet_v2.yaml"), size="96"), "v2")
    imported = evaluate_import("tests.models_for_tests:mobilenet_v2", (3, 96, 96), depth=2)
    assert imported.ok, imported.failures
    for field in ("params", "macs", "bias_adds", "other_ops"):
        assert getattr(imported.total, field) == getattr(from_file.total, field), field
    assert imported.dense_equivalent.macs == from_file.dense_equivalent.macs
    assert imported.dense_equivalent.params == from_file.dense_equivalent.params
    names = [layer.name for layer in imported.layers]
    assert names[:2] == ["features.0", "features.1"] and "features.3.add" not in names
    assert [layer.kind for layer in imported.layers][-1] == "Linear"


def test_layernorm_is_counted_as_other_ops_with_its_params() -> None:
    result = evaluate_import("tests.models_for_tests:tiny_residual", (3, 6, 6))
    assert result.not_counted == [] and result.complete
    norm = next(op for op in result.ops if op.name == "norm")
    # LayerNorm([8, 6, 6]): weight and bias 2·288 = 576 params; 4 + 1 + 1 = 6 ops per element · 288 = 1,728
    assert (norm.kind, norm.params, norm.macs, norm.other_ops) == ("feature norm", 576, 0, 1_728)
    kinds = [op.kind for op in result.ops]
    assert kinds == ["conv", "conv", "batchnorm", "add", "activation", "feature norm", "reduce", "linear"]
    # stem 8·36·3·9 = 7,776; block 8·36·8·9 = 20,736; head 5·8 = 40 → 28,552
    assert result.total.macs == 28_552 and result.ok


def test_functional_conv_is_counted_with_the_parameter_it_uses() -> None:
    result = evaluate_import("tests.models_for_tests:functional_conv", (3, 8, 8))
    assert result.ok and result.complete, result.failures
    # F.conv2d on its 4×3×3×3 weight: 4·6·6·3·9 = 3,888 MACs, 4·3·9 = 108 params (the module's own parameter)
    (conv,) = result.ops
    assert (conv.kind, conv.macs, conv.params, conv.params_measured) == ("conv", 3_888, 108, 108)
    assert conv.macs_flop_counter == 3_888


def test_conv1d_conv3d_model() -> None:
    result = evaluate_import("tests.models_for_tests:shapes_1d_3d", (4, 16))
    assert result.ok, result.failures
    # conv1d 6·8·4·3 = 576; conv3d 2·(2·6·4)·1·27 = 2,592
    assert result.total.macs == 576 + 2592


def test_width_multiplier_and_divisor() -> None:
    assert [make_divisible(c * 0.5, 8) for c in (32, 16, 24, 320)] == [16, 8, 16, 160]
    assert make_divisible(16 * 0.35, 8) == 8  # never below the divisor
    plan = load_model(str(CONFIGS / "mobilenet_v1.yaml"), width_multiplier="0.5", size="64")
    params, macs = hook_count(models_for_tests.mobilenet_v1(0.5), (1, 3, 64, 64))
    ops = plan.ops
    from convcost.cost import ops as model_formulas

    assert sum(model_formulas.cost(op).params for op in ops) == params
    assert sum(model_formulas.cost(op).macs for op in ops) == macs
    assert plan.output_shape == (1, 1000)  # classes are not scaled


@pytest.mark.parametrize(("width", "last"), [(0.5, 1280), (0.35, 1280), (1.4, 1792)])
def test_mobilenet_v2_last_conv_is_only_widened(width: float, last: int) -> None:
    # the paper and torchvision: 1280 · max(1, α) channels, rounded to 8 (1280 · 1.4 = 1792)
    plan = load_model(str(CONFIGS / "mobilenet_v2.yaml"), width_multiplier=str(width), size="32")
    conv2 = next(layer for layer in plan.layers if layer.name == "conv2")
    assert conv2.output_shape[1] == last
    assert plan.layers[1].output_shape[1] == make_divisible(16 * width, 8)  # the others follow α


@pytest.mark.parametrize(("width", "size"), [(0.5, 160), (0.75, 224)])
def test_mobilenet_v2_width_multiplier_matches_torchvision_style_reference(width: float, size: int) -> None:
    # reviewer's figures, for orientation: 0.5 @ 160 → 1,968,680 params, 50,184,000 MACs;
    # 0.75 @ 224 → 2,636,424 params, 209,069,792 MACs; the truth here is the plain-torch reference's hooks
    params, macs = hook_count(models_for_tests.torchvision_mobilenet_v2(width), (1, 3, size, size))
    result = evaluate_plan(
        load_model(str(CONFIGS / "mobilenet_v2.yaml"), width_multiplier=str(width), size=str(size)), "v2"
    )
    assert (result.total.params, result.total.macs) == (params, macs)
    assert result.ok, result.failures


def test_multihead_attention_is_counted_and_agrees_with_the_counters() -> None:
    enabled = torch.backends.mha.get_fastpath_enabled()
    result = evaluate_import("tests.models_for_tests:attention", (5, 16))
    assert torch.backends.mha.get_fastpath_enabled() == enabled  # restored
    attention = next(op for op in result.ops if op.name == "attn")
    module = models_for_tests.attention().attn
    assert attention.counted and attention.params == sum(p.numel() for p in module.parameters())
    assert result.total.params == result.total.params_measured  # its out_proj is inside its row
    # by hand, 5 tokens of width 16, 2 heads of 8: in-projection 5·16·48 = 3,840; scores 2·5·5·8 = 400;
    # weights × values 400; out-projection 5·16·16 = 1,280 → 5,920; the fc 5·16·4 = 320
    assert attention.macs == 5_920 and result.total.macs == 5_920 + 320
    # bias adds: q, k, v and out projections 4·5·16 = 320; softmax and scale 2 · 2 heads · 5 · 5 = 100
    assert (attention.bias_adds, attention.other_ops) == (320, 100)
    assert attention.macs_flop_counter == 5_920
    assert result.ok and result.complete, result.failures


def test_container_parameter_does_not_break_the_output_shape_check() -> None:
    result = evaluate_import("tests.models_for_tests:scaled", (3, 6, 6))
    assert result.ok, result.failures
    assert result.output_shape == result.output_shape_measured == (1, 8, 6, 6)
    assert result.not_counted == []  # the scale is the multiply's parameter
    mul = next(op for op in result.ops if op.kind == "multiply")
    # conv output 1·8·6·6 = 288 elements times a 1×8×1×1 scale: 288 other ops, 8 params
    assert (mul.params, mul.params_measured, mul.other_ops, mul.macs) == (8, 8, 288, 0)


def test_weight_norm_conv_counts_what_it_stores() -> None:
    result = evaluate_import("tests.models_for_tests:weight_normed", (3, 16, 16))
    assert result.ok, result.failures
    # v 8·3·3·3 = 216, g 8 (one per output channel), bias 8 → 232; MACs 8·14·14·27 = 42,336
    assert result.total.params == 232 and result.total.macs == 42_336


def test_modules_never_called_are_named_in_the_failure() -> None:
    result = evaluate_import("tests.models_for_tests:unused", (3, 4, 4))
    # conv 3·4 + 4 = 16 counted; spare 4·4 + 4 = 20 and extra 3 never called → measured 39
    assert result.failures == [
        "model: params (never called, so not counted: spare (Linear, 20 params), extra (ParameterList, 3 params)): "
        "formula 16, measured 39"
    ]


def test_functional_matmuls_are_counted_and_scalar_sums_are_not_residual_adds() -> None:
    result = evaluate_import("tests.models_for_tests:functional", (5, 16))
    assert [op.name for op in result.not_counted] == ["(model).tensordot"]  # the one with no formula
    by_name = {op.name: op for op in result.ops}
    # addmm: (5×16) @ (16×16): 5·16·16 = 1,280, its weight 256 params; SDPA on 1×5×16: 5·5·16 · 2 = 800;
    # baddbmm (1×5×16) @ (1×16×5): 5·5·16 = 400; conv_transpose2d 4→4 2×2 on 4×4×5: 80 inputs · 4 · 4 = 1,280
    assert (by_name["(model).addmm"].macs, by_name["(model).addmm"].params) == (1_280, 256)
    assert by_name["(model).scaled_dot_product_attention"].macs == 800
    assert by_name["(model).baddbmm"].macs == 400
    transposed = by_name["(model).conv_transpose2d"]
    assert (transposed.macs, transposed.params, transposed.output_shape) == (1_280, 64, (1, 4, 5, 6))
    assert not [op for op in result.ops if op.kind == "add"]  # a.sum() + b.sum() adds scalars
    assert not result.complete and not result.ok  # tensordot is not counted: the counters see its matmul


@pytest.mark.parametrize(("kernel", "stride", "size", "out"), [(4, 1, 16, 16), (2, 1, 7, 7), (4, 2, 16, 8)])
def test_even_kernels_keep_the_size_at_stride_1(kernel: int, stride: int, size: int, out: int) -> None:
    layer = f"{{kind: dense, cout: 4, kernel: {kernel}, stride: {stride}}}"
    text = f"input: {{channels: 3, size: {size}}}\nlayers:\n  - {layer}\n"
    result = evaluate_plan(plan_document(loads(text, "m.yaml")), "m.yaml")
    assert result.ok, result.failures
    # torch's own shapes: padding='same' at stride 1; (k−1)//2 on each side at stride 2
    padding: str | int = "same" if stride == 1 else (kernel - 1) // 2
    expected = nn.Conv2d(3, 4, kernel, stride, padding)(torch.zeros(1, 3, size, size)).shape
    assert result.output_shape == tuple(expected) == (1, 4, out, out)


def test_model_memory_guard_names_the_size(monkeypatch: pytest.MonkeyPatch) -> None:
    import convcost.spec.bounds

    monkeypatch.setattr(convcost.spec.bounds, "available_memory", lambda: 1 << 30)
    text = "input: {channels: 3, size: 100000}\nlayers:\n  - {kind: dense, cout: 512, kernel: 3}\n"
    expected = r"^m\.yaml: input\.size: at input\.size 100000×100000 \(input 1×3×100000×100000\) .* need at least"
    with pytest.raises(UsageError, match=expected):
        evaluate_plan(plan_document(loads(text, "m.yaml")), "m.yaml")
    with pytest.raises(UsageError, match=r"^tests\.models_for_tests:scaled: input: the input 1×3×100000×100000"):
        evaluate_import("tests.models_for_tests:scaled", (3, 100_000, 100_000))


def test_evaluate_source_restores_the_thread_count() -> None:
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        result = evaluate_source("tests.models_for_tests:scaled", input_shape="3x4x4", threads=1)
        assert torch.get_num_threads() == 2
        assert result.environment.threads == 1  # the chosen count is what it reports
    finally:
        torch.set_num_threads(previous)


MODEL = """\
input: {channels: 3, size: 16}
defaults: {bias: false, norm: batch, act: relu}
layers:
  - {kind: dense, cout: 8, kernel: 3}
  - {kind: pool, mode: max, kernel: 2}
  - {kind: inverted_residual, cout: 8, expand: 2, repeat: 2}
  - {kind: pool, mode: avg, global: true}
  - {kind: flatten}
  - {kind: linear, cout: 4}
"""


def test_small_model_file() -> None:
    plan = plan_document(loads(MODEL, "m.yaml"))
    assert [layer.name for layer in plan.layers] == [
        "dense1", "pool1", "inverted_residual1.1", "inverted_residual1.2", "pool2", "flatten1", "linear1",
    ]  # fmt: skip
    result = evaluate_plan(plan, "m.yaml")
    assert result.ok, result.failures
    # dense 8·16·16·3·9 = 55,296; each block: expand 16·64·8 = 8,192, dw 16·64·9 = 9,216, project 8·64·16 = 8,192
    # linear 4·8 = 32 → 55,296 + 2·25,600 + 32 = 106,528
    assert result.total.macs == 106_528


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("input: {channels: 3, size: 8}\nlayers:\n  - {kind: dense, cout: 8, kernal: 3}\n",
         "m.yaml:3: layers[0].kernal: unknown key; did you mean 'kernel'?"),
        ("input: {channels: 3, size: 8}\nlayers:\n  - {kind: sepparable, cout: 8}\n",
         "m.yaml:3: layers[0].kind: unknown kind 'sepparable'; did you mean 'separable'?"),
        ("input: {channels: 3, size: 8}\nlayers:\n  - {kind: linear, cout: 8}\n",
         "m.yaml:3: layers[0].kind: linear needs a flat N×features input, got 1×3×8×8: add a 'flatten' layer "
         "before it"),
        ("input: {channels: 3, size: 8}\nlayers:\n  - kind: grouped\n    cout: 8\n    kernel: 3\n    groups: 2\n",
         "m.yaml:6: layers[0].groups: cin (3, the previous layer's output) and cout (8) must both be divisible by 2"),
        ("input: {channels: 3, size: 4}\nlayers:\n  - {kind: dense, cout: 8, kernel: 7, padding: 0}\n",
         "m.yaml:3: layers[0].kernel: kernel extent 7×7 (with dilation) is larger than the padded input 4×4"),
        # an even kernel at stride 2 pads (4 − 1) // 2 = 1 a side: (1 + 2 − 3 − 1) // 2 + 1 = 0 rows out
        ("input: {channels: 8, size: 1}\nlayers:\n  - {kind: inverted_residual, cout: 8, kernel: 4, stride: 2}\n",
         "m.yaml:3: layers[0].kernel: kernel 4×4 is larger than the padded input"),
        ("input: {channels: 3, size: 8}\nwidth_multiplier: off\nlayers:\n  - {kind: flatten}\n",
         "m.yaml:2: width_multiplier: must be a positive number, got boolean false"),
    ],
)  # fmt: skip
def test_model_file_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        plan_document(loads(text, "m.yaml"))
    assert message in caught.value.lines()


def test_evaluate_source_flag_errors() -> None:
    with pytest.raises(SpecError) as caught:
        evaluate_source("tests.models_for_tests:tiny_residual", width_multiplier="0.5")
    assert [issue.path for issue in caught.value.issues] == ["width_multiplier", "input"]
    with pytest.raises(UsageError, match=r"returned int, not an nn\.Module"):
        evaluate_source("tests.models_for_tests:not_a_module", input_shape="3x8x8")
    with pytest.raises(UsageError, match="calling broken\\(\\) failed: RuntimeError: weights not found"):
        evaluate_source("tests.models_for_tests:broken", input_shape="3x8x8")
    with pytest.raises(UsageError, match="has no attribute 'tiny_residul'; did you mean 'tiny_residual'"):
        evaluate_source("tests.models_for_tests:tiny_residul", input_shape="3x8x8")
    with pytest.raises(UsageError, match="forward pass on input 1×5×8×8 failed"):
        evaluate_source("tests.models_for_tests:tiny_residual", input_shape="5x8x8")


def test_a_global_pool_averages_unless_told_otherwise() -> None:
    text = (
        "input: {channels: 3, size: 8}\nlayers:\n  - {kind: dense, cout: 4, kernel: 3}\n"
        "  - {kind: pool, global: true}\n"
    )
    result = evaluate_plan(plan_document(loads(text, "m.yaml")), "m.yaml")
    assert result.ok, result.failures
    assert result.output_shape == (1, 4, 1, 1)
    # the conv keeps 8×8 (model-file convs pad to keep the size) and has no bias by default: 4·3·9 = 108 params
    assert result.total.params == 4 * 3 * 9
    pool = result.layers[1].ops[0]
    assert (pool.kind, pool.detail) == ("adaptive pool", "avg → 1×1")
    assert pool.other_ops == 4 * 8 * 8  # one add per input element


def test_a_windowed_pool_needs_its_mode() -> None:
    text = "input: {channels: 3, size: 8}\nlayers:\n  - {kind: pool, kernel: 2}\n"
    with pytest.raises(SpecError) as caught:
        plan_document(loads(text, "m.yaml"))
    assert caught.value.lines() == ["m.yaml:3: layers[0].mode: required for a windowed pool: max or avg"]
