"""``convcost.count(model, inputs)`` on an nn.Module instance: shapes, tensors, tuples and dicts of them, the
instance unchanged afterwards, and the meta path."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import convcost
from convcost.errors import ConvcostError, SpecError, UsageError
from tests.models_inputs import DictOutput, KeywordInputs, Tokens, TwoInputs

# TwoInputs: conv 3→4, 3×3 on 8×8: 3*4*9*64 = 6,912; vector 5*6 = 30; head 10*2 = 20 → 6,962 MACs per sample,
# 108 + 30 + 20 = 158 params
TWO_INPUTS_MACS, TWO_INPUTS_PARAMS = 6_962, 158


def test_a_shape() -> None:
    conv = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False))
    result = convcost.count(conv, (3, 10, 10), batch=2)
    assert isinstance(result, convcost.ModelResult)
    # 2*3*8*9*8*8 = 27,648 MACs; 3*8*9 = 216 params
    assert result.total.macs == 27_648 and result.total.params == 216 and result.ok
    assert result.input_shape == (2, 3, 10, 10) and result.settings["input"] == [3, 10, 10]


def test_a_tuple_of_shapes_and_a_tensor() -> None:
    result = convcost.count(TwoInputs(), ((3, 8, 8), (5,)))
    assert result.total.macs == TWO_INPUTS_MACS and result.total.params == TWO_INPUTS_PARAMS
    image = torch.randn(4, 3, 8, 8)
    result = convcost.count(TwoInputs(), (image, torch.randn(4, 5)))  # tensors keep their batch: 4
    assert result.total.macs == 4 * TWO_INPUTS_MACS
    assert result.settings["inputs"]["args[0]"] == {"shape": [4, 3, 8, 8], "dtype": None}


def test_a_dict_of_inputs_and_text_shapes() -> None:
    mask = torch.ones(2, 4, 4, dtype=torch.bool)
    result = convcost.count(KeywordInputs(), {"image": (3, 4, 4), "mask": mask}, batch=2)
    assert result.total.macs == 2 * 3 * 2 * 16  # a 1×1 conv 3→2 on 4×4, batch 2: 192
    tokens = convcost.count(Tokens(), "16:int64")
    assert tokens.total.macs == 16 * 8 * 4 and tokens.total.params_measured == 100 * 8 + 8 * 4


def test_dict_output() -> None:
    result = convcost.count(DictOutput(), (6,))
    assert result.outputs == [("output['logits']", (1, 3)), ("output['box']", (1, 4))]
    assert result.total.macs == 48 + 24 + 32


def test_the_instance_is_unchanged() -> None:
    model = TwoInputs().to(torch.float64).train()
    model.vector.weight.requires_grad_(False)
    before = {name: (p.dtype, p.device, p.requires_grad, p.detach().clone()) for name, p in model.named_parameters()}
    image = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    result = convcost.count(model, (image, (5,)), dtype="float16")
    assert result.total.macs == TWO_INPUTS_MACS and result.environment.dtype == "float16"
    assert model.training and all(module.training for module in model.modules())
    for name, parameter in model.named_parameters():
        dtype, device, requires_grad, values = before[name]
        assert (parameter.dtype, parameter.device, parameter.requires_grad) == (dtype, device, requires_grad)
        assert torch.equal(parameter, values)
    assert image.dtype == torch.float64  # the given tensor too
    model.eval()
    convcost.count(model, ((3, 8, 8), (5,)), meta=True)
    assert not model.training and model.conv.weight.device.type == "cpu"


def test_meta() -> None:
    model = TwoInputs()
    result = convcost.count(model, ((3, 8, 8), torch.randn(1, 5)), meta=True)
    assert result.total.macs == TWO_INPUTS_MACS and result.environment.device == "meta"
    assert not model.conv.weight.is_meta
    tokens = convcost.count(Tokens(), "16:int64", batch=2, meta=True)
    assert tokens.total.macs == 2 * 16 * 8 * 4


def test_latency() -> None:
    settings = convcost.LatencySettings(rounds=1, min_time=0.001, warmup_time=0.0, probe=False)
    result = convcost.count(TwoInputs(), ((3, 8, 8), (5,)), latency=settings, threads=1)
    assert result.latency is not None and result.latency.median_ms > 0


def test_errors() -> None:
    with pytest.raises(UsageError, match=r"count: model must be an nn\.Module instance, got str"):
        convcost.count("resnet18", (3, 8, 8))  # type: ignore[arg-type]
    with pytest.raises(SpecError) as raised:
        convcost.count(TwoInputs(), [(3, 0), "x", 5], batch=0)
    assert raised.value.lines() == [
        "batch: must be a positive integer, got 0",
        "inputs[0]: expected SHAPE[:DTYPE] with positive integers (e.g. 3x224x224 or 16:int64), got '3x0'",
        "inputs[1]: expected SHAPE[:DTYPE] with positive integers (e.g. 3x224x224 or 16:int64), got 'x'",
        "inputs[2]: expected a shape (a tuple of ints) or a tensor, got 5",
    ]
    with pytest.raises(SpecError, match="inputs: required"):
        convcost.count(TwoInputs())
    with pytest.raises(ConvcostError, match="missing 1 required positional argument: 'features'"):
        convcost.count(TwoInputs(), (3, 8, 8))
    with pytest.raises(UsageError, match="--meta: counts without running anything"):
        convcost.count(TwoInputs(), ((3, 8, 8), (5,)), meta=True, latency=True)


def test_depth_and_a_torch_size() -> None:
    model = nn.Sequential(nn.Sequential(nn.Linear(4, 4), nn.ReLU()), nn.Linear(4, 2))
    result = convcost.count(model, torch.Size([4]), depth=1)
    # 4*4 + 4*2 = 24 MACs; (16 + 4) + (8 + 2) = 30 params; depth 1: the rows are "0" and "1"
    assert result.total.macs == 24 and result.total.params == 30
    assert [layer.name for layer in result.layers] == ["0", "1"]
    with pytest.raises(SpecError, match="depth: must be a whole number from 1 to 100, got 0"):
        convcost.count(model, (4,), depth=0)
