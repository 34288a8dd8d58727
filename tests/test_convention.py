"""--convention (issue 12, part 7): fvcore's MAC convention, against hand arithmetic.

fvcore (``fvcore/nn/flop_count.py``, ``jit_handles.py``) counts conv and linear as we do, inference batchnorm at
input elements × 2 when affine (× 1 without), ``adaptive_avg_pool2d`` at one per input element, layer/group/
instance norm at 5 per element with a weight, 2-d nearest and bilinear upsampling at 1 and 4 per output, and
ignores activations, adds, max pools, ``scaled_dot_product_attention`` and recurrent ops. torchvision's resnet18
and mobilenet_v2 at 3×224×224 were checked against real fvcore 0.1.5 (README: fvcore 1,819,065,856 and
314,193,216, equal to ours under --convention fvcore), and so were vit_b_16, swin_t and convnext_tiny.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from convcost.cli import app
from convcost.cost.conventions import EXTRA_MACS, Convention, extra_macs
from convcost.cost.ops import ActOp, AdaptivePoolOp, AddOp, ConvOp, LinearOp, NormOp, OpKind, PoolOp
from convcost.cost.ops_nn import AttentionOp, FeatureNormOp, MatmulOp, UpsampleOp
from convcost.run.model import evaluate_import
from tests import models_for_tables

runner = CliRunner()
SMALL = ["model", "tests.models_for_tables:small_cnn", "--input", "3x16x16"]
# conv 8·3·9·256 = 55,296 and linear 8·10 = 80: ours 55,376
# fvcore adds batchnorm 8·256·2 = 4,096 and the global average pool 8·256 = 2,048: 61,520
OURS, FVCORE = 55_376, 61_520


def test_extra_macs_by_kind_by_hand() -> None:
    shape = (2, 8, 16, 16)  # 4,096 elements
    assert extra_macs(NormOp("bn", shape, 8, True), "fvcore") == 8_192  # × 2, affine
    assert extra_macs(NormOp("bn", shape, 8, False), "fvcore") == 4_096  # × 1
    assert extra_macs(AdaptivePoolOp("gap", shape, "avg", (1, 1)), "fvcore") == 4_096
    assert extra_macs(AdaptivePoolOp("gmp", shape, "max", (1, 1)), "fvcore") == 0  # no handle in fvcore
    assert extra_macs(AdaptivePoolOp("gap1d", (2, 8, 16), "avg", (1,)), "fvcore") == 0  # 2d only
    for op in (ActOp("relu", shape), AddOp("add", shape), PoolOp("max", shape),
               ConvOp("conv", shape, cin=8, cout=8), LinearOp("fc", (2, 8), 8, 4)):  # fmt: skip
        assert extra_macs(op, "fvcore") == 0, op.kind  # conv and linear as ours; the rest ignored
    assert extra_macs(NormOp("bn", shape, 8, True)) == 0  # ours: norms are other ops
    norms = {OpKind.NORM, OpKind.ADAPTIVE_POOL, OpKind.FEATURE_NORM, OpKind.UPSAMPLE}
    assert set(EXTRA_MACS[Convention.FVCORE]) == {*norms, OpKind.ATTENTION, OpKind.RECURRENT, OpKind.MATMUL}
    # LayerNorm over 8·16·16 with a weight: 4,096 · 5; RMSNorm has no fvcore handle; bilinear 2·8·32·32 · 4
    assert extra_macs(FeatureNormOp("ln", shape, "layernorm", 256, 256), "fvcore") == 20_480
    assert extra_macs(FeatureNormOp("rms", shape, "rmsnorm", 256), "fvcore") == 0
    assert extra_macs(UpsampleOp("up", shape, "bilinear", (32, 32)), "fvcore") == 65_536
    assert extra_macs(UpsampleOp("up", shape, "bicubic", (32, 32)), "fvcore") == 0
    # scaled_dot_product_attention on 2×4×10×8 by 2×4×12×8: 2·4·10·12 · (8 + 8) = 15,360 left out
    sdpa = AttentionOp("sdpa", (2, 4, 10, 8), (2, 4, 12, 8), (2, 4, 12, 8))
    assert extra_macs(sdpa, "fvcore") == -15_360


def test_fvcore_totals_by_hand_and_the_counters_still_check_ours() -> None:
    result = evaluate_import("small", (3, 16, 16), model=models_for_tables.small_cnn(), convention="fvcore")
    assert (result.total.macs, result.convention) == (FVCORE, "fvcore")
    assert sum(op.own_macs for op in result.ops) == OURS
    assert result.ok, result.failures  # FlopCounterMode and ptflops agree with our 55,376
    plain = evaluate_import("small", (3, 16, 16), model=models_for_tables.small_cnn())
    assert (plain.total.macs, plain.convention) == (OURS, "convcost")
    unaffine = evaluate_import("small", (3, 16, 16), model=models_for_tables.small_cnn(False), convention="fvcore")
    assert unaffine.total.macs == OURS + 2_048 + 2_048  # batchnorm without affine: 8·256 · 1


def test_convention_from_the_cli() -> None:
    result = runner.invoke(app, [*SMALL, "--convention", "fvcore", "-f", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["convention"], data["total"]["macs"], data["ok"]) == ("fvcore", FVCORE, True)
    bn = data["layers"][1]["ops"][0]
    assert (bn["macs"], bn["extra_macs"]) == (4_096, 4_096)
    table = runner.invoke(app, [*SMALL, "--convention", "fvcore"], env={"COLUMNS": "120"}).stdout
    assert "fvcore MACs" in table.splitlines()[0]  # the title says which convention
    assert f"{FVCORE:,} MACs by fvcore's convention" in table and f"{OURS:,} MACs by convcost's" in table
    # params 8·3·9 = 216 + batchnorm 16 + linear 80 + 10 = 322; the default convention says nothing more
    assert f"Total: 322 params, {OURS:,} MACs (111k FLOPs)\n" in runner.invoke(app, SMALL).stdout


def test_an_unknown_convention_is_a_one_line_error() -> None:
    result = runner.invoke(app, [*SMALL, "--convention", "timm"])
    assert result.exit_code == 2
    assert result.stderr == "convcost: error: --convention: 'timm' is not a MAC convention: choose convcost, fvcore\n"


@pytest.fixture
def budget(tmp_path: Path) -> Path:
    path = tmp_path / "budget.yaml"
    path.write_text(
        "convention: fvcore\nchecks:\n"
        "  - {model: 'tests.models_for_tables:small_cnn', input: 3x16x16, macs: {max: 60k}}\n",
        encoding="utf-8",
    )
    return path


def test_check_holds_the_budget_files_convention(budget: Path) -> None:
    result = runner.invoke(app, ["check", str(budget)])
    assert result.exit_code == 1, result.output  # 61,520 by fvcore's convention > 60,000
    assert "61,520" in result.stdout
    assert result.stdout.splitlines()[-1].endswith("(MACs by fvcore's convention)")
    assert json.loads(runner.invoke(app, ["check", str(budget), "-f", "json"]).stdout)["convention"] == "fvcore"
    assert runner.invoke(app, ["check", str(budget), "--convention", "convcost"]).exit_code == 0  # 55,376


def test_a_budget_files_unknown_convention_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "budget.yaml"
    path.write_text("convention: flops\nchecks:\n  - {model: m.yaml, params: {max: 1k}}\n", encoding="utf-8")
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"convcost: error: {path}:1: convention:"), result.stderr


class _Sequence(torch.nn.Module):
    """An LSTM, attention without weights (F.scaled_dot_product_attention inside), a LayerNorm, an upsample."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = torch.nn.LSTM(8, 16, batch_first=True)
        self.attn = torch.nn.MultiheadAttention(16, 2, batch_first=True)
        self.norm = torch.nn.LayerNorm(16)
        self.up = torch.nn.Upsample(scale_factor=2, mode="bilinear")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.lstm(x)
        y = self.norm(y + self.attn(y, y, y, need_weights=False)[0])
        return self.up(y.unsqueeze(1))


def test_fvcore_leaves_out_fused_attention_and_recurrent_ops_and_adds_norms_and_upsampling() -> None:
    ours = evaluate_import("tests.test_convention:_Sequence", (6, 8), model=_Sequence())
    theirs = evaluate_import("tests.test_convention:_Sequence", (6, 8), model=_Sequence(), convention="fvcore")
    assert ours.ok and theirs.ok, (ours.failures, theirs.failures)
    # LSTM 6 steps · 4·16·(8 + 16) = 9,216; attention projections 4·6·16·16 = 6,144 and its core 2·6·6·16 = 1,152
    assert ours.total.macs == 9_216 + 6_144 + 1_152
    # fvcore: no LSTM, no scaled_dot_product_attention; LayerNorm 6·16 elements · 5 = 480; bilinear 12·32
    # outputs · 4 = 1,536 → 8,160 (real fvcore 0.1.5 counts 8,160 for this model)
    assert theirs.total.macs == 6_144 + 480 + 1_536


def test_fvcore_has_no_mv_or_baddbmm_and_counts_an_outer_product_einsum_at_half() -> None:
    # checked against real fvcore 0.1.5 on a model with all four: mv 42 → 0, outer einsum 180 → 90, baddbmm 120 → 0
    assert extra_macs(MatmulOp("mv", (7, 6), (6,), function="mv"), "fvcore") == -42
    assert extra_macs(MatmulOp("outer", (5, 6), (5, 6), "bi,bj->bij", function="einsum"), "fvcore") == 90 - 180
    assert extra_macs(MatmulOp("bmm", (1, 5, 6), (1, 6, 4), added=True, function="baddbmm"), "fvcore") == -120
    assert extra_macs(MatmulOp("ein", (1, 5, 6), (6, 4), "bij,jk->bik", function="einsum"), "fvcore") == 0
