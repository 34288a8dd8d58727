"""Modern models counted completely: each model's MACs and params worked out by hand (the arithmetic in the
comments), and the params also from torch (``sum(p.numel())``, an independent count)."""

from __future__ import annotations

import torch
from torch import nn

import convcost
from convcost.run.model import evaluate_import
from tests import zoo


def _torch_params(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def test_vision_transformer() -> None:
    result = evaluate_import("tests.zoo:tiny_vit", (3, 8, 8), batch=2)
    assert result.ok and result.complete, result.failures
    # per image: patch conv 2·2 positions · 16 outputs · 3·4·4 = 3,072; attention: q, k, v, out projections
    # 4 · 5 tokens · 16 · 16 = 5,120 plus Q·Kᵀ and A·V 2 · 5 · 5 · 16 = 800 → 5,920; the feed-forward
    # 5·16·32 + 5·32·16 = 5,120; the head on the class token 16·3 = 48 → 14,160; the batch of 2: 28,320
    assert result.total.macs == 2 * 14_160
    # patch 16·48 + 16 = 784, class token 16, positions 5·16 = 80, attention 3·16·16 + 48 + 16·16 + 16 = 1,088,
    # linear1 16·32 + 32 = 544, linear2 32·16 + 16 = 528, norm1 + norm2 + norm 3 · 32 = 96, head 16·3 + 3 = 51
    assert result.total.params == 3_187 == _torch_params(zoo.TinyViT())
    by_name = {op.name: op for op in result.ops}
    assert (by_name["(model).expand"].params, by_name["(model).add"].params) == (16, 80)  # class token, positions
    # on the CPU the counters do not see the fused attention kernel: our figure alone, and said so
    assert by_name["encoder.self_attn"].not_seen_by == ["FlopCounterMode", "ptflops"]
    # LayerNorm over 16 features: 6 ops per element; norm1 on 2·5·16 = 160 elements → 960
    assert by_name["encoder.norm1"].other_ops == 960


def test_recurrent_net() -> None:
    result = evaluate_import("tests.zoo:tiny_recurrent", (6, 8), batch=2)
    assert result.ok and result.complete, result.failures
    # LSTM layer 1: 4 gates · 16 · (8 + 16) = 1,536 per step and direction · 6 steps · 2 directions = 18,432;
    # layer 2 (input 2·16 = 32): 4 · 16 · (32 + 16) = 3,072 · 12 = 36,864; GRU cell 3 · 12 · (32 + 12) = 1,584;
    # head 12·4 = 48 → 56,928 per sequence
    assert result.total.macs == 2 * 56_928
    # LSTM 2 directions · (1,536 + 128 bias) + 2 · (3,072 + 128) = 9,728; GRU cell 1,584 + 72 = 1,656; head 52
    assert result.total.params == 9_728 + 1_656 + 52 == _torch_params(zoo.TinyRecurrent())
    lstm = next(op for op in result.ops if op.name == "lstm")
    assert lstm.output_shape == lstm.output_shape_measured == (2, 6, 32)


def test_conv_decoder() -> None:
    result = evaluate_import("tests.zoo:tiny_decoder", (4, 8, 8), batch=1)
    assert result.ok and result.complete, result.failures
    # down 8·4·4 outputs · 4·9 = 4,608; squeeze 2·8 = 16; excite 8·2 = 16; transposed 8·4·4 inputs · 4·2·2 =
    # 2,048; out 2·16·16 outputs · 8 = 4,096 → 10,784
    assert result.total.macs == 10_784
    # down 288 + 8, GroupNorm 16, squeeze 16 + 2, excite 16 + 8, transposed 8·4·2·2 + 4 = 132, InstanceNorm 8,
    # out 16 + 2 → 512
    assert result.total.params == 512 == _torch_params(zoo.TinyDecoder())
    by_kind: dict[str, int] = {}
    for op in result.ops:
        by_kind[op.kind] = by_kind.get(op.kind, 0) + op.other_ops
    # the SE multiply 8·4·4 = 128; bilinear reads 4 points per output 4 · 8·16·16 = 8,192;
    # GroupNorm 6 · 128 = 768 and InstanceNorm 6 · 4·8·8 = 1,536
    assert by_kind["multiply"] == 128 and by_kind["upsample"] == 8_192 and by_kind["feature norm"] == 768 + 1_536


class Permute(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1)


class DropPath(nn.Module):
    """Stochastic depth: the identity at inference."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Bessel(nn.Module):
    """No parameters and no MACs, but arithmetic that no formula knows."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.special.bessel_j0(x)


def test_a_module_that_returns_its_input_or_a_view_of_it_has_nothing_to_count() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 1), Permute(), DropPath(), nn.Linear(4, 2))
    result = evaluate_import("tests.zoo:tiny_vit", (3, 5, 5), model=model)
    assert result.ok and result.complete, result.failures
    # conv 4·25 outputs · 3 = 300, linear 25 rows · 4 · 2 = 200
    assert [op.name for op in result.ops] == ["0", "3"] and result.total.macs == 500
    unknown = evaluate_import("tests.zoo:tiny_vit", (3, 5, 5), model=nn.Sequential(nn.Conv2d(3, 4, 1), Bessel()))
    assert [op.name for op in unknown.not_counted] == ["1"] and not unknown.complete


class SharedEncoder(nn.Module):
    """One position encoder module held by two blocks (as CoaT shares its), called by both."""

    def __init__(self) -> None:
        super().__init__()
        shared = nn.Conv2d(4, 4, 3, padding=1, groups=4)
        self.first = nn.Sequential(shared, nn.ReLU())
        self.second = nn.Sequential(shared, nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x))


def test_a_module_shared_by_two_parents_is_counted_at_each_call_and_its_weights_once() -> None:
    result = evaluate_import("tests.zoo:tiny_vit", (4, 5, 5), model=SharedEncoder())
    assert result.ok and result.complete, result.failures
    # the depthwise 3×3 twice: 2 · 4·25 outputs · 9 = 1,800 MACs; its 4·9 + 4 = 40 params once
    assert result.total.macs == 1_800 and result.total.params == 40
    # each call is named by the path it was called by, and --depth 1 gives each parent its own call
    assert [op.name for op in result.ops if op.kind == "conv"] == ["first.0", "second.0"]
    rows = evaluate_import("tests.zoo:tiny_vit", (4, 5, 5), model=SharedEncoder(), depth=1)
    assert rows.ok, rows.failures
    # 4·25 outputs · 9 = 900 MACs each; the weights (40) in the first parent's row only
    assert [(layer.name, layer.macs, layer.params) for layer in rows.layers] == [("first", 900, 40), ("second", 900, 0)]


def test_token_decoder_with_a_tied_head() -> None:
    result = convcost.count(zoo.TinyGPT(), "8:int64", batch=2)
    assert result.ok and result.complete, result.failures
    # per sequence of 8 tokens, width 16, 2 heads of 8: qkv 8·16·48 = 6,144; causal attention (not discounted)
    # 2 heads · 8 · 8 · (8 + 8) = 2,048; proj 8·16·16 = 2,048; MLP 8·16·64 + 8·64·16 = 16,384; the tied head
    # 8·16·50 = 6,400 → 33,024; the batch of 2: 66,048
    assert result.total.macs == 2 * 33_024
    # tokens 50·16 = 800, positions 8·16 = 128, norms 16 + 16 + 32, qkv 768, proj 256, up 1,088, down 1,040:
    # 4,144; the head reuses the token table: no params of its own
    assert result.total.params == 4_144 == _torch_params(zoo.TinyGPT())
    head = [op for op in result.ops if op.kind == "linear" and op.detail == "16→50"]
    assert [op.params for op in head] == [0]
    assert result.output_shape == (2, 8, 50)


def test_two_inputs_and_a_module_called_twice() -> None:
    result = convcost.count(zoo.TwoTowers(), ((10,), (10,)), batch=2)
    assert result.ok and result.complete, result.failures
    # the encoder 2·10·6 = 120 MACs per call, called twice; the batched dot product 2 · 1·1·6 = 12 → 252
    assert result.total.macs == 252
    assert result.total.params == 66 == _torch_params(zoo.TwoTowers())  # its weights once
