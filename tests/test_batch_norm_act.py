"""`norm: batch` and `act: relu|relu6|none` after each conv stage, in `compare` and in batch files.

Their parameters count (BatchNorm: a weight and a shift per channel); their operations go in a column of their own
(BatchNorm 2 per output element, ReLU/ReLU6 1) and never into MACs, by formula or by either counter.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from convcost.cli import app
from convcost.errors import SpecError
from convcost.results.batch import Status
from convcost.run.batch import evaluate
from convcost.spec.batch import loads_batch

runner = CliRunner()
# 8→16 3×3 on 10×10: 8×8 output, 16·8·8 = 1,024 output elements; 16·8·9 = 1,152 weights; 1,024·72 = 73,728 MACs
LAYER = ["compare", "--cin", "8", "--cout", "16", "-k", "3", "--size", "10", "--no-latency", "--format", "json"]


def dense_of(*extra: str) -> dict[str, object]:
    result = runner.invoke(app, [*LAYER, *extra])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ok"] is True
    dense: dict[str, object] = data["dense"]
    return dense


@pytest.mark.parametrize(
    ("norm", "act", "extra_params", "other_ops"),
    [
        ("none", "none", 0, 0),
        ("batch", "none", 2 * 16, 2 * 1024),
        ("none", "relu", 0, 1024),
        ("none", "relu6", 0, 1024),
        ("batch", "relu", 2 * 16, 3 * 1024),
        ("batch", "relu6", 2 * 16, 3 * 1024),
    ],
)
def test_norm_and_act_count_params_and_ops_never_macs(norm: str, act: str, extra_params: int, other_ops: int) -> None:
    dense = dense_of("--norm", norm, "--act", act)
    assert dense["params"] == dense["params_measured"] == 1152 + 16 + extra_params
    assert dense["macs"] == dense["macs_flop_counter"] == dense["macs_ptflops"] == 73_728
    assert dense["ptflops_raw"] == 73_728 + 1024  # only the bias adds ride along in ptflops' own figure
    assert dense["other_ops"] == other_ops
    assert dense["bias_adds"] == 1024


def test_separable_gets_norm_and_act_after_each_stage() -> None:
    result = runner.invoke(app, [*LAYER, "--norm", "batch", "--act", "relu", "--no-bias"])
    data = json.loads(result.stdout)
    separable = data["alternatives"][0]
    depthwise, pointwise = separable["stages"]
    assert (depthwise["norm"], depthwise["act"], pointwise["norm"], pointwise["act"]) == ("batch", "relu") * 2
    # depthwise 8·9 + 2·8 = 88, pointwise 16·8 + 2·16 = 160
    assert (depthwise["params"], pointwise["params"]) == (88, 160)
    # 3 ops on each of 8·8·8 = 512 depthwise and 1,024 pointwise outputs
    assert (depthwise["other_ops"], pointwise["other_ops"]) == (1536, 3072)
    assert separable["macs"] == 8 * 64 * 9 + 16 * 64 * 8


def test_table_has_a_norm_act_column_only_when_used() -> None:
    base = LAYER[:-2]
    plain = runner.invoke(app, base)
    assert plain.exit_code == 0 and "Norm+act" not in plain.stdout
    with_norm = runner.invoke(app, [*base, "--norm", "batch", "--act", "relu"])
    assert with_norm.exit_code == 0 and "Norm+act" in with_norm.stdout and "3,072" in with_norm.stdout


@pytest.mark.parametrize(
    ("flag", "value", "line"),
    [
        ("--norm", "layer", "convcost: error: --norm: Input should be 'none' or 'batch', got 'layer'"),
        ("--act", "gelu", "convcost: error: --act: Input should be 'none', 'relu' or 'relu6', got 'gelu'"),
    ],
)
def test_unknown_norm_or_act(flag: str, value: str, line: str) -> None:
    result = runner.invoke(app, [*LAYER, flag, value])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [line]


def test_norm_and_act_in_a_batch_file_and_per_stage() -> None:
    found = loads_batch(
        "defaults: {cin: 8, cout: 16, kernel: 3, size: 10, bias: false, norm: batch, act: relu6}\n"
        "layers:\n"
        "  - {name: both}\n"
        "  - {name: plain-pointwise, pointwise: {norm: none, act: none}}\n"
        "  - {name: act-off, act: off}\n",
        "layers.yaml",
    )
    assert found.entries[2].spec is None
    assert SpecError(found.issues, "layers.yaml").lines() == [
        "layers.yaml:5: layers[2].act: got boolean false (YAML reads off/no/on/yes as booleans): write none or quote it"
    ]
    result = evaluate(found)
    assert [entry.status for entry in result.entries] == [Status.OK, Status.OK, Status.INVALID]
    both, plain = (entry.comparison for entry in result.entries[:2])
    assert both is not None and plain is not None
    # pointwise 16·8 = 128 weights, + 2·16 BatchNorm unless overridden off
    assert both.alternatives[0].stages[1].params == 128 + 32
    assert plain.alternatives[0].stages[1].params == 128
    assert plain.alternatives[0].stages[1].other_ops == 0
    assert both.alternatives[0].macs == plain.alternatives[0].macs
