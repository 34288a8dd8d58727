"""Layer kinds: stage expansion, validation of every invalid combination, channel maps and the shared kernel."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

from convcost.cost import formulas
from convcost.cost.formulas import ConvStage
from convcost.errors import SpecError
from convcost.run import build
from convcost.spec import kinds
from convcost.spec.compare import CompareSpec, LayerKind
from convcost.spec.kinds import parse_compare


def _issues(**values: Any) -> list[tuple[tuple[str | int, ...], str]]:
    with pytest.raises(SpecError) as caught:
        kinds.plan(parse_compare(values))
    return [(issue.loc, issue.message) for issue in caught.value.issues]


def test_stage_names_for_set_match_the_spec() -> None:
    from convcost.cli import STAGE_NAMES_FOR_SET
    from convcost.spec.compare import STAGE_NAMES

    assert STAGE_NAMES_FOR_SET == STAGE_NAMES


def test_registry_covers_every_kind_and_refuses_duplicates() -> None:
    assert set(kinds.registered_kinds()) == set(LayerKind)
    with pytest.raises(RuntimeError, match="already registered"):
        kinds.register_kind(LayerKind.DENSE)(kinds.dense)


def test_cout_not_divisible_by_groups() -> None:
    assert _issues(cin=8, cout=30, kernel=3, groups=4, vs="grouped") == [
        (("groups",), "cin (8) and cout (30) must both be divisible by 4")
    ]


def test_grouped_needs_groups() -> None:
    assert _issues(cin=8, cout=32, kernel=3, vs="grouped") == [
        (("groups",), "grouped needs groups > 1 (groups=1 is the dense conv)")
    ]


@pytest.mark.parametrize("kind", ["depthwise", "shared"])
def test_depthwise_needs_cout_equal_multiplier_times_cin(kind: str) -> None:
    assert _issues(cin=8, cout=64, kernel=3, multiplier=4, vs=kind) == [
        (("cout",), f"{kind} needs cout = multiplier × cin = 4 × 8 = 32, got 64")
    ]


def test_kernel_larger_than_padded_input() -> None:
    # 7×7 kernel on a 4×4 input padded by 1 → 6×6: no valid position
    assert _issues(cin=2, cout=4, kernel=7, padding=1, size=4) == [
        (("kernel",), "kernel extent 7×7 (with dilation) is larger than the padded input 6×6")
    ]


def test_dilation_counts_in_the_kernel_extent() -> None:
    # 3×3 dilated by 4 covers 9×9 > 8×8
    assert _issues(cin=2, cout=4, kernel=3, dilation=4, size=8)[0][1].startswith("kernel extent 9×9")


def test_same_padding_needs_stride_one() -> None:
    assert _issues(cin=2, cout=4, kernel=3, padding="same", stride=2) == [
        (("padding",), "padding 'same' needs stride 1 (as nn.Conv2d)")
    ]


def test_override_of_an_absent_stage_is_an_error() -> None:
    issues = _issues(cin=2, cout=4, kernel=3, vs="grouped", groups=2, pointwise={"padding": 1})
    assert issues == [(("pointwise",), "no pointwise stage in the layers compared (dense, grouped)")]


def test_override_problems_are_named_on_the_stage() -> None:
    issues = _issues(cin=2, cout=4, kernel=3, size=4, depthwise={"kernel": 9})
    assert issues[0][0] == ("depthwise", "kernel")


@pytest.mark.parametrize(
    ("values", "loc", "message"),
    [
        ({"cin": 0}, ("cin",), "must be a positive integer, got 0"),
        ({"cin": -3}, ("cin",), "must be a positive integer, got -3"),
        ({"kernel": "3x0"}, ("kernel",), "must be a positive integer or RxS, got '3x0'"),
        ({"kernel": "big"}, ("kernel",), "must be a positive integer or RxS, got 'big'"),
        ({"size": 0}, ("size",), "must be a positive integer or HxW, got 0"),
        ({"padding": -1}, ("padding",), "must be a non-negative integer, RxS or 'same', got -1"),
        # parse_compare validates flags: no YAML 1.1 hint (a batch file's entries get it: see test_batch)
        ({"batch": "1e6"}, ("batch",), "must be a positive integer, got '1e6'"),
        ({"stride": True}, ("stride",), "must be a positive integer or RxS, got boolean true (YAML reads "
                                        "yes/no/on/off as booleans)"),
        ({"act": False}, ("act",), "got boolean false (YAML reads off/no/on/yes as booleans): write none or quote it"),
        ({"kernal": 3}, ("kernal",), "unknown key"),
    ],
)  # fmt: skip
def test_field_errors_name_the_field(values: dict[str, Any], loc: tuple[str, ...], message: str) -> None:
    data = {"cin": 8, "cout": 64, "kernel": 3, **values}
    with pytest.raises(SpecError) as caught:
        parse_compare(data)
    assert [(issue.loc, issue.message) for issue in caught.value.issues] == [(loc, message)]


def test_unknown_kind_is_named() -> None:
    with pytest.raises(SpecError) as caught:
        parse_compare({"cin": 8, "cout": 64, "kernel": 3, "vs": "separable,seperable"})
    (issue,) = caught.value.issues
    assert issue.loc == ("vs", 1)
    assert "'seperable'" in issue.message


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(SpecError) as caught:
        parse_compare({"cin": 0, "cout": "x", "kernel": 3, "stride": 0})
    assert [issue.loc for issue in caught.value.issues] == [("cin",), ("cout",), ("stride",)]


def test_values_parse_from_flags_and_yaml_alike() -> None:
    spec = parse_compare(
        {"cin": "8", "cout": 64, "kernel": "3x5", "padding": [1, 2], "size": "32×48", "vs": ["spatial"]}
    )
    assert (spec.cin, spec.kernel, spec.padding, spec.size, spec.vs) == (
        8,
        (3, 5),
        (1, 2),
        (32, 48),
        [LayerKind.SPATIAL],
    )
    assert isinstance(spec, CompareSpec)


def _reads(stage: ConvStage) -> dict[int, set[int]]:
    """Which output channels each input channel reaches, found by pushing one-hot inputs through torch's conv."""
    module = build.conv(stage)
    weight = torch.ones_like(module.weight)  # all-positive weights: no accidental cancellation
    r, s = stage.kernel
    onehot = torch.eye(stage.cin).reshape(stage.cin, stage.cin, 1, 1).expand(stage.cin, stage.cin, r, s)
    output = F.conv2d(onehot, weight, groups=module.groups)  # one sample per input channel
    return {c: set(torch.nonzero(output[c].flatten(1).sum(1)).flatten().tolist()) for c in range(stage.cin)}


@pytest.mark.parametrize(
    ("cin", "cout", "groups"),
    [(8, 32, 8), (8, 8, 8), (6, 12, 3), (4, 8, 1), (8, 16, 2)],
)
def test_channel_map_agrees_with_torch(cin: int, cout: int, groups: int) -> None:
    stage = ConvStage("grouped", cin, cout, (3, 3), groups=groups)
    expected: dict[int, set[int]] = {c: set() for c in range(cin)}
    for outputs, inputs in formulas.channel_map(stage):
        for c in inputs:
            expected[c] |= set(outputs)
    assert _reads(stage) == expected
    if groups == cin:
        # depth multiplier m: output channels m·c … m·c+m−1 read input channel c
        m = cout // cin
        assert expected == {c: set(range(m * c, m * c + m)) for c in range(cin)}


def test_shared_kernel_is_one_kernel_per_multiplier_slot() -> None:
    stage = ConvStage("shared", 5, 10, (3, 3), groups=5, shared=True, bias=False)
    module = build.conv(stage)
    assert sum(p.numel() for p in module.parameters()) == 2 * 9  # m·R·S, independent of cin
    weight = module.weight  # (10, 1, 3, 3), tiled from the (2, 1, 3, 3) original
    for channel in range(5):
        assert torch.equal(weight[2 * channel], weight[0])
        assert torch.equal(weight[2 * channel + 1], weight[1])
    assert not torch.equal(weight[0], weight[1])
    assert isinstance(module, torch.nn.Conv2d)


def test_scientific_notation_hint_names_the_value_given() -> None:
    from convcost.spec.batch import loads_batch

    with pytest.raises(SpecError) as caught:
        parse_compare({"cin": 8, "cout": 64, "kernel": 3, "size": "1e3"})  # as from flags: YAML is not involved
    assert [issue.message for issue in caught.value.issues] == ["must be a positive integer or HxW, got '1e3'"]
    batch = loads_batch("layers:\n  - {cin: 8, cout: 64, kernel: 3, size: 1e3}\n", "f.yaml")
    assert [issue.message for issue in batch.entries[0].issues] == [
        "must be a positive integer or HxW, got '1e3' (YAML 1.1 reads 1e3 as a string: write the number out in full)"
    ]


@pytest.mark.parametrize(
    ("values", "loc", "message"),
    [
        ({"groups": 4}, ("groups",), "only the grouped kind uses groups: add grouped to vs"),
        ({"mid": 4, "vs": "grouped", "groups": 2}, ("mid",), "only the spatial kind has a middle width: add spatial "
                                                             "to vs"),
        ({"cout": 60, "vs": "depthwise"}, ("cout",), "depthwise needs cout = multiplier × cin = 1 × 8 = 8, got 60"),
    ],
)  # fmt: skip
def test_the_api_refuses_what_the_cli_refuses(values: dict[str, Any], loc: tuple[str, ...], message: str) -> None:
    # convcost.parse_compare holds the rules between fields and kinds too, and compare() plans with the same rules
    import convcost

    data = {"cin": 8, "cout": 64, "kernel": 3, **values}
    for call in (convcost.parse_compare, lambda values: kinds.plan(CompareSpec.model_validate(values))):
        with pytest.raises(SpecError) as caught:
            call(data)
        assert [(issue.loc, issue.message) for issue in caught.value.issues] == [(loc, message)]


def test_groups_and_mid_are_kept_when_their_kind_is_compared() -> None:
    import convcost

    spec = convcost.parse_compare({"cin": 8, "cout": 64, "kernel": 3, "vs": "grouped,spatial", "groups": 2, "mid": 4})
    assert (spec.groups, spec.mid) == (2, 4)
