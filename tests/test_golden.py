"""Rendered tables against golden files (regenerate with `pytest --overwrite` and review the diff)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from rich.console import Console

from convcost.report.compare import render_table
from convcost.run.comparison import compare
from convcost.spec.kinds import parse_compare

GOLDEN = Path(__file__).parent / "golden"
CASES = {
    "compare_blog": {"cin": 8, "cout": 64, "kernel": 3},
    "compare_all_kinds": {"cin": 8, "cout": 32, "kernel": "3x5", "padding": "1x2", "groups": 4, "multiplier": 2,
                          "norm": "batch", "act": "relu6", "bias": False, "size": 32,
                          "vs": "separable,grouped,spatial,pointwise"},
    "compare_padded_pointwise": {"cin": 32, "cout": 64, "kernel": 3, "padding": 1, "size": 64,
                                 "pointwise": {"padding": 1}},
}  # fmt: skip
# weights (+ bias, or + 2·channels of batchnorm) and weights × output positions, layer = the sum of its stages
FIGURES: dict[str, dict[str, tuple[int, int, dict[str, tuple[int, int]]]]] = {
    "compare_blog": {  # 8→64 3×3 on 128×128: 126·126 = 15,876 positions
        "dense": (4_672, 73_156_608, {}),  # 8·64·9 + 64 = 4,672; 4,608·15,876 = 73,156,608
        "separable": (656, 9_271_584, {  # 80 + 576; 1,143,072 + 8,128,512
            "depthwise": (80, 1_143_072),  # 8·9 + 8; 72·15,876
            "pointwise": (576, 8_128_512),  # 8·64 + 64; 512·15,876
        }),
    },
    "compare_all_kinds": {  # 8→32 3×5 padded to 32×32: 1,024 positions, no bias, batchnorm after every stage
        "dense": (3_904, 3_932_160, {}),  # 32·8·15 = 3,840 + 64; 3,840·1,024
        "separable": (848, 770_048, {  # multiplier 2: a 16-channel depthwise stage
            "depthwise": (272, 245_760),  # 16·15 = 240 + 32; 240·1,024
            "pointwise": (576, 524_288),  # 32·16 = 512 + 64; 512·1,024
        }),
        "grouped": (1_024, 983_040, {}),  # 4 groups: 32·2·15 = 960 + 64; 960·1,024
        "spatial": (1_552, 1_507_328, {
            "row": (208, 196_608),  # 8·8·3 = 192 + 16; 192·1,024
            "column": (1_344, 1_310_720),  # 32·8·5 = 1,280 + 64; 1,280·1,024
        }),
        "pointwise": (320, 262_144, {}),  # 32·8 = 256 + 64; 256·1,024
    },
    "compare_padded_pointwise": {  # 32→64 3×3 padded on 64×64: 4,096 positions; the padded 1×1 makes 66·66 = 4,356
        "dense": (18_496, 75_497_472, {}),  # 64·32·9 = 18,432 + 64; 18,432·4,096
        "separable": (2_432, 10_100_736, {
            "depthwise": (320, 1_179_648),  # 32·9 + 32; 288·4,096
            "pointwise": (2_112, 8_921_088),  # 64·32 + 64; 2,048·4,356
        }),
    },
}  # fmt: skip


@pytest.fixture
def one_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # the header shows the thread count: keep it machine-independent
    yield
    torch.set_num_threads(previous)


@pytest.mark.parametrize("name", sorted(CASES))
def test_table_matches_golden(name: str, overwrite: bool, one_thread: None) -> None:
    comparison = compare(parse_compare(CASES[name]), None)
    buffer = io.StringIO()
    Console(file=buffer, width=80, color_system=None, highlight=False).print(render_table(comparison))
    text = buffer.getvalue()
    path = GOLDEN / f"{name}.txt"
    if overwrite:
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} is missing: run pytest --overwrite and review it"
    assert text == path.read_text(encoding="utf-8")
    # figures that hold whatever the golden says, by hand: (params, MACs) of every layer, then of each stage
    for layer in comparison.layers:
        params, macs, stages = FIGURES[name][layer.kind]
        assert (layer.params, layer.macs) == (params, macs), layer.kind
        assert {stage.name: (stage.params, stage.macs) for stage in layer.stages if len(layer.stages) > 1} == stages
    assert max(len(line) for line in text.splitlines()) <= 80
