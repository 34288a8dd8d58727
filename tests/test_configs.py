"""Every shipped batch config, run for real and checked against figures computed here from first principles.

The arithmetic below never calls convcost.cost.formulas: a conv with cin inputs, cout outputs, an R×S kernel and g
groups has cout·(cin/g)·R·S weights (+ cout biases, + 2·cout BatchNorm weights and shifts) and does
cout·H'·W'·(cin/g)·R·S multiply-accumulates per image; BatchNorm costs 2 ops and ReLU 1 op per output element.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from convcost.results.batch import BatchResult, Status
from convcost.run.batch import evaluate
from convcost.spec.batch import load_batch

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
BATCH_CONFIGS = ["seeds.yaml", "mistakes.yaml", "mobilenet_v1_layers.yaml"]


def out_size(size: int, kernel: int = 3, stride: int = 1, padding: int = 0) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def conv(
    cin: int, cout: int, k: int, out: int, groups: int = 1, bias: bool = True, bn: bool = False
) -> tuple[int, int]:
    """(params, MACs) of one conv stage on a square output of side ``out``."""
    params = cout * (cin // groups) * k * k + (cout if bias else 0) + (2 * cout if bn else 0)
    return params, cout * out * out * (cin // groups) * k * k


@pytest.fixture(scope="module")
def results() -> dict[str, BatchResult]:
    # every shipped config, once per test session (the MobileNet layers run 26 real forward passes per counter)
    return {name: evaluate(load_batch(CONFIGS / name)) for name in BATCH_CONFIGS}


def test_every_batch_config_is_listed_and_points_editors_at_the_schema() -> None:
    shipped = {path.name for path in CONFIGS.glob("*.yaml") if "\nlayers:" in path.read_text(encoding="utf-8")}
    assert set(BATCH_CONFIGS) <= shipped
    for name in BATCH_CONFIGS:
        first = (CONFIGS / name).read_text(encoding="utf-8").splitlines()[0]
        assert first == "# yaml-language-server: $schema=batch.schema.json"


def test_seeds(results: dict[str, BatchResult]) -> None:
    result = results["seeds.yaml"]
    assert [entry.status for entry in result.entries] == [Status.OK] * 4
    blog, block, multiplier, shared = (entry.comparison for entry in result.entries)
    assert blog is not None and block is not None and multiplier is not None and shared is not None

    # 8→64 3×3 on 128×128, no padding: the blog's 4,672 against 656 params, on a 126×126 output
    assert (blog.dense.params, blog.alternatives[0].params) == (4672, 656)
    assert blog.dense.output_shape == (1, 64, 126, 126)
    assert blog.dense.macs == 73_156_608  # 8·64·9·126·126

    # 32→128 3×3, padding 1, on 64×64, no bias, BatchNorm + ReLU after each conv
    dense = conv(32, 128, 3, 64, bias=False, bn=True)  # 36,864 + 256 = 37,120 params
    depthwise = conv(32, 32, 3, 64, groups=32, bias=False, bn=True)  # 288 + 64
    pointwise = conv(32, 128, 1, 64, bias=False, bn=True)  # 4,096 + 256
    assert (block.dense.params, block.dense.macs) == dense == (37_120, 150_994_944)
    separable = block.alternatives[0]
    assert (separable.params, separable.macs) == (depthwise[0] + pointwise[0], depthwise[1] + pointwise[1])
    assert separable.output_shape == (1, 128, 64, 64)
    # norm + act in their own column: 3 ops per output element, never in the MACs
    assert block.dense.other_ops == 3 * 128 * 64 * 64
    assert separable.other_ops == 3 * 32 * 64 * 64 + 3 * 128 * 64 * 64

    # depth multiplier 4: groups = cin = 8, 4·8 = 32 outputs, weight (32, 1, 3, 3)
    (stage,) = multiplier.alternatives[0].stages
    assert (stage.groups, stage.weight_shape) == (8, (32, 1, 3, 3))
    assert multiplier.alternatives[0].params == conv(8, 32, 3, 126, groups=8)[0] == 32 * 9 + 32

    # shared kernel: one 3×3 kernel applied to all 8 channels (stored (1, 1, 3, 3)) against one per channel
    depthwise_layer, shared_layer = shared.alternatives
    assert depthwise_layer.params == 8 * 9 + 8
    assert shared_layer.params == 9 + 8
    assert shared_layer.stages[0].stored_weight_shape == (1, 1, 3, 3)
    assert shared_layer.stages[0].weight_shape == (8, 1, 3, 3)
    assert shared_layer.macs == depthwise_layer.macs == 8 * 126 * 126 * 9

    totals = {item.vs: item for item in result.totals}
    blog_sep = conv(8, 8, 3, 126, groups=8)[0] + conv(8, 64, 1, 126)[0]
    assert totals["separable"].dense_params == 4672 + 37_120
    assert totals["separable"].params == blog_sep + depthwise[0] + pointwise[0] == 656 + 4_704
    assert totals["separable"].dense_macs == 73_156_608 + 150_994_944
    assert (totals["depthwise"].entries, totals["shared"].entries) == (2, 1)


def test_mistakes_are_all_flagged(results: dict[str, BatchResult]) -> None:
    result = results["mistakes.yaml"]
    assert [entry.status for entry in result.entries] == [Status.FAILED] * 4
    assert result.totals == []  # a wrong construction is no replacement: nothing to total
    shapes = {}
    for entry in result.entries:
        assert entry.comparison is not None
        (ratio,) = entry.comparison.ratios
        assert not ratio.shape_match
        # the counters agree with the formula: the construction is wrong, not the counting
        assert all(check.ok for layer in entry.comparison.layers for check in layer.checks)
        shapes[entry.name] = entry.comparison.alternatives[0].output_shape[2:]
    assert shapes == {
        "padded-pointwise": (66, 66),  # 64 + 2·1 − 1 + 1
        "unpadded-depthwise": (62, 62),  # 64 − 3 + 1
        "stride-twice": (16, 16),  # 64 → 32 → 16
        "square-padding-on-3x1": (64, 66),  # the 3×1 conv pads W by 1 each side with a kernel width of 1
    }
    assert result.problems[0] == (
        f"{CONFIGS / 'mistakes.yaml'}:15: padded-pointwise: separable: output shape 1×128×66×66 differs from "
        "dense 1×128×64×64"
    )


# MobileNet v1 (Howard et al. 2017, Table 1): (cin, cout, stride, input side) of the 13 separable layers
MOBILENET_V1 = [
    (32, 64, 1, 112), (64, 128, 2, 112), (128, 128, 1, 56), (128, 256, 2, 56), (256, 256, 1, 28),
    (256, 512, 2, 28), *[(512, 512, 1, 14)] * 5, (512, 1024, 2, 14), (1024, 1024, 1, 7),
]  # fmt: skip


def test_mobilenet_v1_layers(results: dict[str, BatchResult]) -> None:
    result = results["mobilenet_v1_layers.yaml"]
    assert [entry.status for entry in result.entries] == [Status.OK] * 13
    dense_params = dense_macs = separable_params = separable_macs = 0
    for entry, (cin, cout, stride, size) in zip(result.entries, MOBILENET_V1, strict=True):
        assert entry.comparison is not None
        out = out_size(size, stride=stride, padding=1)
        dense = conv(cin, cout, 3, out, bias=False, bn=True)
        depthwise = conv(cin, cin, 3, out, groups=cin, bias=False, bn=True)
        pointwise = conv(cin, cout, 1, out, bias=False, bn=True)
        assert entry.comparison.dense.output_shape == (1, cout, out, out), entry.name
        assert (entry.comparison.dense.params, entry.comparison.dense.macs) == dense, entry.name
        separable = entry.comparison.alternatives[0]
        assert (separable.params, separable.macs) == (depthwise[0] + pointwise[0], depthwise[1] + pointwise[1])
        dense_params += dense[0]
        dense_macs += dense[1]
        separable_params += depthwise[0] + pointwise[0]
        separable_macs += depthwise[1] + pointwise[1]
    # the sizes chain: each layer's output is the next one's input (112 → 56 → 28 → 14 → 7)
    for (_, _, stride, size), (_, _, _, following) in itertools.pairwise(MOBILENET_V1):
        assert out_size(size, stride=stride, padding=1) == following
    (totals,) = result.totals
    assert (totals.entries, totals.dense_params, totals.params) == (13, dense_params, separable_params)
    assert (totals.dense_macs, totals.macs) == (dense_macs, separable_macs)
    # Σ cin·o²·9 + cin·cout·o² over the 13 layers (o = output side)
    assert separable_macs == 556_878_336
    # with the stem (3→32 3×3 s2: 32·3·9·112·112 = 10,838,016) and the classifier (1024·1000 = 1,024,000) this
    # is the paper's "569 million mult-adds"
    assert round((separable_macs + 10_838_016 + 1_024_000) / 1e6) == 569
