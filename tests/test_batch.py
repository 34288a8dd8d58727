"""Batches as a library (spec, results and run .batch): parsing, defaults, per-entry validation, evaluation."""

from __future__ import annotations

import json
from textwrap import dedent

import pytest
import typer

from convcost.cli import app
from convcost.errors import MeasurementError, SpecError, UsageError
from convcost.results.batch import Status
from convcost.run.batch import collect, evaluate, run
from convcost.spec.batch import Batch, BatchDefaults, BatchFile, LayerEntry, loads_batch
from convcost.spec.compare import CompareSpec, LayerKind


def parse(text: str) -> Batch:
    return loads_batch(dedent(text), "layers.yaml")


def problems(text: str) -> list[str]:
    found = parse(text)
    return SpecError(found.issues, found.source).lines()


BLOG = """\
    layers:
      - name: blog
        cin: 8
        cout: 64
        kernel: 3
    """


def test_every_compare_option_is_a_key_with_the_same_name() -> None:
    assert set(LayerEntry.model_fields) == set(CompareSpec.model_fields)
    assert set(BatchDefaults.model_fields) == set(CompareSpec.model_fields) - {"name"}
    assert set(BatchFile.model_fields) == {"version", "defaults", "layers"}
    command = typer.main.get_command(app).commands["compare"]  # type: ignore[attr-defined]
    flags = {param.name for param in command.params}
    # every field of a comparison is a compare flag of the same name; stage overrides are `--set STAGE.FIELD=V`
    # on the command line and `STAGE: {FIELD: V}` in a file
    stages = {"dense", "depthwise", "pointwise", "grouped", "row", "column", "shared"}
    assert set(CompareSpec.model_fields) - stages - {"name"} <= flags
    assert "overrides" in flags


def test_defaults_apply_and_the_entry_wins() -> None:
    found = parse("""\
        version: 1
        defaults: {kernel: 3, padding: 1, bias: false, size: 32}
        layers:
          - {name: a, cin: 8, cout: 16}
          - {name: b, cin: 8, cout: 16, padding: 0, size: 16x8}
        """)  # fmt: skip
    a, b = (entry.spec for entry in found.entries)
    assert a is not None and b is not None
    assert (a.kernel, a.padding, a.bias, a.size) == ((3, 3), (1, 1), False, (32, 32))
    assert (b.kernel, b.padding, b.bias, b.size) == ((3, 3), (0, 0), False, (16, 8))
    assert found.version == 1 and found.issues == []


def test_stage_overrides_merge_key_by_key() -> None:
    found = parse("""\
        defaults: {kernel: 3, pointwise: {bias: false}}
        layers:
          - {cin: 8, cout: 16, pointwise: {padding: 1}}
          - {cin: 8, cout: 16}
        """)  # fmt: skip
    first, second = (entry.spec for entry in found.entries)
    assert first is not None and second is not None
    assert first.pointwise is not None and (first.pointwise.bias, first.pointwise.padding) == (False, (1, 1))
    assert second.pointwise is not None and (second.pointwise.bias, second.pointwise.padding) == (False, None)


def test_names_and_lines() -> None:
    found = parse("""\
        layers:
          - cin: 8
            cout: 16
            kernel: 3
          - {name: second, cin: 8, cout: 16, kernel: 3}
        """)  # fmt: skip
    assert [(entry.name, entry.line) for entry in found.entries] == [("layers[0]", 2), ("second", 5)]


BAD = """\
    version: 1
    defaults:
      kernel: 3
      groups: 4
    layers:
      - {name: fine, cin: 8,
         cout: 64,
         vs: [separable, grouped]}  # groups from defaults is for the grouped kind: compared here
      - name: typo
        cin: 8
        cout: 64
        kernal: 3
      - name: zero
        cin: 8
        cout: 64
        kernel: 0
      - cin: 1e6
        cout: 64
        act: off
      - name: no-cin
        cout: 8
      - name: indivisible
        cin: 30
        cout: 64
        vs: grouped
      - 5
      - name: fine
        cin: 8
        cout: 8
        padding: 0x1
        name: again
      - name: off
        cin: 8
        cout: 8
    """


def test_every_problem_in_the_file_at_once_each_with_its_line() -> None:
    assert problems(BAD) == [
        "layers.yaml:12: layers[1].kernal: unknown key; did you mean 'kernel'?",
        "layers.yaml:16: layers[2].kernel: must be a positive integer or RxS, got 0",
        "layers.yaml:17: layers[3].cin: must be a positive integer, got '1e6' "
        "(YAML 1.1 reads 1e6 as a string: write the number out in full)",
        "layers.yaml:19: layers[3].act: got boolean false (YAML reads off/no/on/yes as booleans): "
        "write none or quote it",
        "layers.yaml:20: layers[4].cin: required (in this entry or in defaults)",
        # the culprit is in defaults: the line says where it is set
        "layers.yaml:4: layers[5].groups: cin (30) and cout (64) must both be divisible by 4 (groups set in defaults)",
        "layers.yaml:26: layers[6]: must be a mapping of keys and values, got the number 5",
        "layers.yaml:27: layers[7].name: duplicate name 'fine': it is also the name of layers[0] (layers.yaml:6); "
        "names must be unique",
        "layers.yaml:30: layers[7].padding: YAML 1.1 reads 0x1 as the number 1: write it as a decimal number, "
        'or quote it if you mean something else ("0x1")',
        "layers.yaml:31: layers[7].name: duplicate key (first given on line 27)",
        "layers.yaml:32: layers[8].name: must be text, got boolean false "
        "(YAML reads yes/no/on/off as booleans): quote it",
    ]  # fmt: skip
    found = parse(BAD)
    assert [entry.spec is not None for entry in found.entries] == [True] + [False] * 8


def test_invalid_entries_do_not_stop_the_valid_ones() -> None:
    result = evaluate(parse(BAD))
    assert [entry.status for entry in result.entries] == [Status.OK] + [Status.INVALID] * 8
    fine = result.entries[0].comparison
    assert fine is not None
    # 8→64 3×3 on 128×128: 64·126·126·8·9 = 73,156,608 dense MACs
    assert fine.dense.macs == 73_156_608
    assert result.count("invalid") == 8 and not result.ok
    assert "layers.yaml:12: layers[1].kernal: unknown key; did you mean 'kernel'?" in result.problems


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("layers: []\n", ["layers.yaml:1: layers: must list at least one entry"]),
        ("layers:\n  cin: 3\n", ["layers.yaml:1: layers: must be a list (lines starting with '- '), got a mapping"]),
        ("- cin: 3\n", ["layers.yaml: expected a mapping with a 'layers' list, got a list"]),
        ("", ["layers.yaml: expected a mapping with a 'layers' list, got an empty file"]),
        ("version: 2\nlayers: [{cin: 8, cout: 8, kernel: 3}]\n",
         ["layers.yaml:1: version: this convcost reads version 1 files, got 2"]),
        ("version: yes\nlayers: [{cin: 8, cout: 8, kernel: 3}]\n",
         ["layers.yaml:1: version: this convcost reads version 1 files, got True"]),
        ("defaults: {kernal: 3}\nlayers: [{cin: 8, cout: 8, kernel: 3}]\n",
         ["layers.yaml:1: defaults.kernal: unknown key; did you mean 'kernel'?"]),
        ("defaults: {name: x}\nlayers: [{cin: 8, cout: 8, kernel: 3}]\n",
         ["layers.yaml:1: defaults.name: unknown key"]),
        ("layer:\n  - {cin: 8}\n",
         ["layers.yaml:1: layers: required", "layers.yaml:1: layer: unknown key; did you mean 'layers'?"]),
        ("layers: [{cin: 8, cout: 8, kernel: 3}]\nlayers: []\n",
         ["layers.yaml:2: layers: duplicate key (first given on line 1)"]),
    ],
)  # fmt: skip
def test_problems_of_the_file_itself_stop_everything(text: str, expected: list[str]) -> None:
    with pytest.raises(SpecError) as caught:
        loads_batch(text, "layers.yaml")
    assert caught.value.lines() == expected


def test_yaml_syntax_error_names_the_line() -> None:
    with pytest.raises(SpecError) as caught:
        loads_batch("layers: [{cin: 8, cout: 8, kernel: 3}\n", "layers.yaml")
    (line,) = caught.value.lines()
    # libyaml says "did not find expected ',' or ']'", the pure-Python parser "expected ',' or ']', but got ..."
    assert line.startswith("layers.yaml:2: invalid YAML: ") and "expected ',' or ']'" in line


def test_file_level_problem_still_lists_the_entries_problems() -> None:
    with pytest.raises(SpecError) as caught:
        loads_batch("version: 3\nlayers:\n  - {cin: 8, cout: 8, kernal: 3}\n", "layers.yaml")
    assert caught.value.lines() == [
        "layers.yaml:1: version: this convcost reads version 1 files, got 3",
        "layers.yaml:3: layers[0].kernal: unknown key; did you mean 'kernel'?",
    ]


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("{cin: 8, cout: 8, kernel: 3, name: 12}",
         "layers.yaml:2: layers[0].name: must be text, got the number 12: quote it (name: '12')"),
        ("{cin: 8, cout: 16, kernel: 3, vs: [depthwise]}",
         "layers.yaml:2: layers[0].cout: depthwise needs cout = multiplier × cin = 1 × 8 = 8, got 16"),
        ("{cin: 8, cout: 8, kernel: 3, vs: sepparable}",
         "layers.yaml:2: layers[0].vs[0]: Input should be 'dense', 'depthwise', 'pointwise', 'separable', 'grouped', "
         "'spatial' or 'shared', got 'sepparable'"),
        ("{cin: 8, cout: 8, kernel: 3, pointwise: {paddin: 1}}",
         "layers.yaml:2: layers[0].pointwise.paddin: unknown key; did you mean 'padding'?"),
        ("{cin: 8, cout: 8, kernel: 3, vs: [spatial], pointwise: {padding: 1}}",
         "layers.yaml:2: layers[0].pointwise: no pointwise stage in the layers compared (dense, spatial)"),
        ("{cin: 8, cout: 8, kernel: 9, size: 4}",
         "layers.yaml:2: layers[0].kernel: kernel extent 9×9 (with dilation) is larger than the padded "
         "input 4×4"),
        ("{cin: 8, cout: 8, kernel: 3, bias: 'off'}",
         "layers.yaml:2: layers[0].bias: must be true or false, got 'off'"),
        ("{cin: 8, cout: 8, kernel: 3, groups: 4}",  # as compare's --groups: the same rule in the spec layer
         "layers.yaml:2: layers[0].groups: only the grouped kind uses groups: add grouped to vs"),
        ("{cin: 8, cout: 8, kernel: 3, mid: 4, vs: [grouped], groups: 2}",
         "layers.yaml:2: layers[0].mid: only the spatial kind has a middle width: add spatial to vs"),
    ],
)  # fmt: skip
def test_entry_problems(entry: str, expected: str) -> None:
    assert problems(f"layers:\n  - {entry}\n") == [expected]


def test_select_by_glob() -> None:
    found = parse("""\
        defaults: {cin: 8, cout: 8, kernel: 3}
        layers: [{name: block1}, {name: block2}, {name: head}]
        """)  # fmt: skip
    assert [entry.name for entry in found.select("block*").entries] == ["block1", "block2"]
    with pytest.raises(UsageError, match=r"no entry of layers.yaml matches 'tail' \(entries: block1, block2, head\)"):
        found.select("tail")


def test_evaluate_blog_case_and_rows() -> None:
    result = evaluate(parse(BLOG))
    (entry,) = result.entries
    assert entry.status is Status.OK and result.ok
    (row,) = entry.rows()
    # dense 8·64·9 + 64 = 4,672; separable (8·9 + 8) + (8·64 + 64) = 656
    assert (row["dense_params"], row["params"]) == (4672, 656)
    # separable MACs: 8·126·126·9 = 1,143,072 depthwise + 64·126·126·8 = 8,128,512 pointwise = 9,271,584
    assert (row["dense_macs"], row["macs"]) == (73_156_608, 9_271_584)
    assert row["shapes_match"] and row["checks_ok"] and row["speedup"] is None
    assert row["output_shape"] == [1, 64, 126, 126]
    (totals,) = result.totals
    assert (totals.vs, totals.entries, totals.params, totals.macs) == ("separable", 1, 656, 9_271_584)
    data = json.loads(json.dumps(result.to_dict(detail=True)))
    assert data["entries"][0]["comparison"]["dense"]["macs"] == 73_156_608
    assert data["counts"] == {"ok": 1, "failed": 0, "invalid": 0, "error": 0, "not run": 0}


def test_shape_mismatch_is_failed_and_left_out_of_totals() -> None:
    result = evaluate(
        parse("""\
        defaults: {cin: 8, cout: 16, kernel: 3, padding: 1, size: 64}
        layers:
          - {name: good}
          - {name: padded-pointwise, pointwise: {padding: 1}}
        """)
    )  # fmt: skip
    assert [entry.status for entry in result.entries] == [Status.OK, Status.FAILED]
    assert result.problems == [
        "layers.yaml:4: padded-pointwise: separable: output shape 1×16×66×66 differs from dense 1×16×64×64"
    ]
    (totals,) = result.totals
    # only the good entry: dense 16·8·9 + 16 = 1,168 params
    assert (totals.entries, totals.dense_params) == (1, 1168)


def test_totals_per_alternative_kind() -> None:
    result = evaluate(
        parse("""\
        defaults: {kernel: 3, size: 16, bias: false}
        layers:
          - {cin: 4, cout: 8}
          - {cin: 8, cout: 8, vs: [separable, depthwise]}
        """)
    )  # fmt: skip
    totals = {item.vs: item for item in result.totals}
    # dense 4→8: 8·4·9 = 288 and 8→8: 8·8·9 = 576; outputs 14×14
    assert totals["separable"].dense_params == 288 + 576
    # separable 4→8: 4·9 + 4·8 = 68; 8→8: 8·9 + 8·8 = 136
    assert totals["separable"].params == 68 + 136
    assert (totals["depthwise"].entries, totals["depthwise"].params) == (1, 72)
    # depthwise 8→8 MACs: 8·14·14·9 = 14,112
    assert totals["depthwise"].macs == 14_112
    assert totals["depthwise"].ratio_macs == pytest.approx(8 * 8 * 9 * 14 * 14 / 14_112)


def test_a_crashing_entry_does_not_stop_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    import convcost.run.comparison

    real = convcost.run.comparison.compare

    def flaky(spec: CompareSpec, settings: object = None, calibration: object = None, threads: object = None) -> object:
        if spec.name == "counter":
            raise MeasurementError("ptflops failed: boom")
        if spec.name == "bug":
            raise RuntimeError("unexpected")
        return real(spec, None)

    monkeypatch.setattr(convcost.run.comparison, "compare", flaky)
    found = parse("""\
        defaults: {cin: 4, cout: 4, kernel: 3, size: 8}
        layers: [{name: counter}, {name: bug}, {name: fine}]
        """)  # fmt: skip
    result = evaluate(found)
    assert [entry.status for entry in result.entries] == [Status.ERROR, Status.ERROR, Status.OK]
    assert result.problems == [
        "layers.yaml:2: counter: ptflops failed: boom",
        "layers.yaml:2: bug: internal error: RuntimeError: unexpected",
    ]
    assert isinstance(result.entries[1].exception, RuntimeError)


def test_interrupted_run_keeps_what_was_done() -> None:
    found = parse("""\
        defaults: {cin: 4, cout: 4, kernel: 3, size: 8}
        layers: [{name: one}, {name: two}, {name: three}]
        """)  # fmt: skip
    outcomes = run(found)
    first = next(outcomes)
    outcomes.close()  # what a KeyboardInterrupt inside the generator amounts to for the caller
    result = collect(found, [first], interrupted=True)
    assert [entry.status for entry in result.entries] == [Status.OK, Status.NOT_RUN, Status.NOT_RUN]
    assert result.interrupted and not result.ok
    assert result.summary() == "3 entries: 1 ok, 2 not run (interrupted)"
    assert result.to_dict()["interrupted"] is True


def test_vs_accepts_words_separated_by_commas() -> None:
    (entry,) = parse("layers: [{cin: 8, cout: 8, kernel: 3, vs: 'separable, depthwise'}]\n").entries
    assert entry.spec is not None and entry.spec.vs == [LayerKind.SEPARABLE, LayerKind.DEPTHWISE]


def test_cuda_entry_without_cuda_is_invalid_and_the_rest_runs() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = evaluate(parse("defaults: {cin: 4, cout: 4, kernel: 3, size: 8}\nlayers: [{device: cuda}, {}]\n"))
    assert [entry.status for entry in result.entries] == [Status.INVALID, Status.OK]
    assert result.problems == [
        f"layers.yaml:2: layers[0]: --device cuda: CUDA is not available on this machine (torch {torch.__version__})"
    ]
