"""convcost.convert: exact at full rank, the weight error of numpy's SVD at lower rank, merged pairs exact, the
original untouched, and the predicted params/MACs those of the converted model as measured."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from convcost.errors import SpecError
from convcost.run.convert import convert
from tests.models_for_convert import separable_blocks, small_net


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().norm() / b.detach().norm())


def _one_conv(**kwargs: object) -> nn.Sequential:
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(**kwargs)).double()  # type: ignore[arg-type]


CONVS = [
    {"in_channels": 4, "out_channels": 12, "kernel_size": 3, "padding": 1},
    {"in_channels": 3, "out_channels": 5, "kernel_size": (3, 5), "stride": (2, 1), "padding": (1, 2), "bias": False},
    {"in_channels": 2, "out_channels": 7, "kernel_size": 3, "dilation": (2, 1), "padding": (2, 0), "stride": 2},
    {"in_channels": 3, "out_channels": 4, "kernel_size": 3, "padding": 1, "padding_mode": "reflect"},
    {"in_channels": 3, "out_channels": 6, "kernel_size": (2, 4), "padding": "same"},
]


@pytest.mark.parametrize("conv", CONVS)
def test_full_rank_separable_reproduces_the_dense_output(conv: dict[str, object]) -> None:
    model = _one_conv(**conv)
    x = torch.randn(2, model[0].in_channels, 11, 10, dtype=torch.float64)
    r, s = model[0].kernel_size
    result = convert(model, x, to="separable", multiplier=r * s)  # m = R·S ≥ min(K, R·S): exact
    assert _relative(result.model(x), model(x)) < 1e-5
    assert result.layers[0].weight_error is not None and result.layers[0].weight_error < 1e-12
    assert result.model(x).shape == model(x).shape


@pytest.mark.parametrize("conv", CONVS)
def test_full_rank_spatial_reproduces_the_dense_output(conv: dict[str, object]) -> None:
    model = _one_conv(**conv)
    x = torch.randn(2, model[0].in_channels, 11, 10, dtype=torch.float64)
    result = convert(model, x, to="spatial")  # rank min(C·R, K·S) by default: exact
    assert _relative(result.model(x), model(x)) < 1e-5
    assert result.layers[0].weight_error is not None and result.layers[0].weight_error < 1e-12


def test_separable_at_multiplier_min_k_rs_is_exact_already() -> None:
    model = _one_conv(in_channels=3, out_channels=4, kernel_size=3, padding=1)  # min(K, R·S) = min(4, 9) = 4
    x = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    assert _relative(convert(model, x, multiplier=4).model(x), model(x)) < 1e-5
    assert convert(model, x, multiplier=3).layers[0].weight_error > 1e-3  # type: ignore[operator]


def test_low_rank_separable_error_is_numpys_svd_and_the_output_error_follows() -> None:
    model = _one_conv(in_channels=4, out_channels=8, kernel_size=3, padding=1)
    weight = model[0].weight.detach().numpy()  # (K, C, R, S) = (8, 4, 3, 3)
    m = 2
    # Eckart–Young per input channel: the error of the best rank-m slice is its singular values beyond m
    dropped = sum(float(np.sum(np.linalg.svd(weight[:, c].reshape(8, 9), compute_uv=False)[m:] ** 2))
                  for c in range(4))  # fmt: skip
    expected = np.sqrt(dropped) / np.linalg.norm(weight)
    x = torch.randn(2, 4, 9, 9, dtype=torch.float64)
    result = convert(model, x, multiplier=m)
    assert result.layers[0].weight_error == pytest.approx(expected, rel=1e-9)
    # the output error is the conv of the kernel error: numpy's own rank-m reconstruction, slice by slice
    approx = np.zeros_like(weight)
    for c in range(4):
        u, sigma, vh = np.linalg.svd(weight[:, c].reshape(8, 9), full_matrices=False)
        approx[:, c] = ((u[:, :m] * sigma[:m]) @ vh[:m]).reshape(8, 3, 3)
    difference = F.conv2d(x, torch.from_numpy(weight - approx), padding=1)
    assert torch.allclose(model(x) - result.model(x), difference, atol=1e-10)


def test_low_rank_spatial_error_is_numpys_svd_of_the_cr_by_ks_matrix() -> None:
    model = _one_conv(in_channels=3, out_channels=5, kernel_size=(3, 2), padding=1)
    weight = model[0].weight.detach().numpy()  # (5, 3, 3, 2)
    matrix = np.zeros((3 * 3, 5 * 2))  # A[(c, r), (k, s)] = W[k, c, r, s], written out element by element
    for k in range(5):
        for c in range(3):
            for r in range(3):
                for s in range(2):
                    matrix[c * 3 + r, k * 2 + s] = weight[k, c, r, s]
    sigma = np.linalg.svd(matrix, compute_uv=False)
    for rank in (1, 3):
        expected = np.sqrt(np.sum(sigma[rank:] ** 2)) / np.linalg.norm(weight)
        result = convert(model, (1, 3, 7, 7), to="spatial", rank=rank)
        assert result.layers[0].weight_error == pytest.approx(expected, rel=1e-9)


def test_merged_pair_reproduces_the_pair_and_a_nonlinearity_is_refused() -> None:
    model = separable_blocks().double()
    x = torch.randn(2, 8, 10, 10, dtype=torch.float64)
    result = convert(model, x, to="dense")
    assert [layer.name for layer in result.layers] == ["0.0"]
    assert _relative(result.model(x), model(x)) < 1e-10
    assert [item.name for item in result.refused] == ["2"]
    assert "ReLU6 (4) lies between it and the 1×1 conv 5" in result.refused[0].reason
    # params: depthwise 8·9 = 72, BatchNorm 2·8 = 16, 1×1 8·16 + 16 = 144 → dense 16·8·9 + 16 = 1168
    assert (result.layers[0].params_before, result.layers[0].params_after) == (72 + 16 + 144, 1168)
    # MACs on 10×10 (padding 1): depthwise 2·8·100·9 = 14,400, 1×1 2·16·100·8 = 25,600; dense 2·16·100·72
    assert (result.layers[0].macs_before, result.layers[0].macs_after) == (14_400 + 25_600, 230_400)


def test_the_original_model_is_untouched() -> None:
    for to in ("separable", "spatial", "grouped:2", "dense"):
        model = separable_blocks() if to == "dense" else small_net().train()
        before = copy.deepcopy(model.state_dict())
        training = model.training
        convert(model, (2, 8, 8, 8) if to == "dense" else (2, 3, 16, 16), to=to)
        after = model.state_dict()
        assert before.keys() == after.keys()
        assert all(torch.equal(before[key], after[key]) for key in before), to  # BatchNorm statistics included
        assert model.training == training


@pytest.mark.parametrize(("to", "options"), [("separable", {"multiplier": 2}), ("spatial", {"rank": 3}),
                                             ("grouped:2", {}), ("separable", {"multiplier": 1})])  # fmt: skip
def test_predicted_params_and_macs_are_the_converted_models_as_measured(to: str, options: dict[str, int]) -> None:
    model = small_net().eval()
    x = torch.randn(2, 3, 16, 16)
    result = convert(model, x, to=to, **options)  # type: ignore[arg-type]
    assert result.after_selected is not None and result.before is not None
    assert result.after_selected.params == sum(parameter.numel() for parameter in result.model.parameters())
    assert result.before.params == sum(parameter.numel() for parameter in model.parameters())
    for net, totals in ((model, result.before), (result.model, result.after_selected)):
        with FlopCounterMode(display=False) as counter:
            net(x)
        assert counter.get_total_flops() == 2 * totals.macs  # type: ignore[operator]  # FLOPs = 2 × MACs
    assert result.model(x).shape == model(x).shape


def test_grouped_is_structure_only_and_says_so() -> None:
    result = convert(small_net(), (1, 3, 16, 16), to="grouped:4")
    assert [layer.name for layer in result.layers] == ["3", "5"]  # cin 3 does not split into 4 groups
    assert all(layer.weight_error is None and "structure only" in (layer.error_note or "") for layer in result.layers)
    assert result.refused[0].reason == "4 groups do not divide cin 3 and cout 16"


def test_dtype_device_and_bias_are_kept() -> None:
    model = small_net().to(torch.float64)
    result = convert(model, (1, 3, 16, 16))
    replaced = result.model[0]
    assert isinstance(replaced, nn.Sequential)
    assert all(parameter.dtype == torch.float64 for parameter in result.model.parameters())
    assert replaced[0].bias is None and replaced[1].bias is not None  # the bias moves to the 1×1 conv
    assert result.model[5][1].bias is None  # a conv without bias stays without


def test_without_an_input_macs_are_unknown_and_select_names_layers() -> None:
    result = convert(small_net(), select=["3"])
    assert [layer.name for layer in result.layers] == ["3"]
    assert result.layers[0].macs_before is None and result.layers[0].params_before == 16 * 32 * 9 + 32
    assert [layer.name for layer in convert(small_net(), select=["[35]"]).layers] == ["3", "5"]  # a glob
    with pytest.raises(SpecError, match=r"select: '4' is not a layer that --to separable can convert"):
        convert(small_net(), select=["4"])
    with pytest.raises(SpecError):
        convert(small_net(), to="sideways")


def test_a_conv_called_twice_is_refused() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(self.conv(x))

    result = convert(Twice(), (1, 4, 6, 6))
    assert result.layers == [] and result.refused[0].reason == "called 2 times in one forward pass (a shared conv)"


def test_from_weights_false_builds_the_structure_only() -> None:
    result = convert(small_net(), (1, 3, 16, 16), from_weights=False)
    assert all(layer.weight_error is None and layer.error_note == "from_weights=False: stock initialisation"
               for layer in result.layers)  # fmt: skip
    assert result.model(torch.randn(1, 3, 16, 16)).shape == (1, 10)
