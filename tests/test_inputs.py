"""Any inputs: ``--input`` repeated with dtypes, ``--inputs FILE``, ``--arg NAME=VALUE``, outputs of any structure.

The models are in tests/models_inputs.py; their params and MACs are worked out here by hand.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from convcost.cli import app
from convcost.errors import SpecError
from convcost.spec.inputs import Inputs, InputSpec, combined, parse_arguments, parse_input_spec, parse_inputs
from convcost.spec.inputs_file import load_inputs

runner = CliRunner()
M = "tests.models_inputs"
DTYPES = "float32, float16, bfloat16, float64, int64, int32, int16, int8, uint8, bool"


def model_json(*args: str) -> dict[str, Any]:
    result = runner.invoke(app, ["model", *args, "-f", "json"])
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def error_of(*args: str) -> str:
    result = runner.invoke(app, ["model", *args])
    assert result.exit_code == 2, result.output
    return result.stderr.strip()


# --- the specs (no torch) --------------------------------------------------------------------------------------


def test_input_spec_shape_and_dtype() -> None:
    assert parse_input_spec("3x224x224") == InputSpec((3, 224, 224), None)
    assert parse_input_spec("16:int64") == InputSpec((16,), "int64")
    assert parse_input_spec("3x32x32:float16") == InputSpec((3, 32, 32), "float16")
    assert parse_input_spec("16:long") == InputSpec((16,), "int64")  # torch's names too
    assert parse_inputs(["3x8x8", "5"]) == Inputs((InputSpec((3, 8, 8)), InputSpec((5,))))


def test_arguments_are_yaml_scalars() -> None:
    parsed = parse_arguments(["model_name=resnet18", "pretrained=false", "depth=3", "scale=0.5", "extra=null",
                              "tag='3'", "empty="])  # fmt: skip
    assert parsed == {"model_name": "resnet18", "pretrained": False, "depth": 3, "scale": 0.5, "extra": None,
                      "tag": "3", "empty": ""}  # fmt: skip
    assert type(parsed["depth"]) is int and type(parsed["pretrained"]) is bool
    assert parse_arguments(["items=[1, 2]"]) == {"items": "[1, 2]"}  # only scalars: a list stays the text


def test_argument_errors_name_the_flag() -> None:
    with pytest.raises(SpecError) as raised:
        parse_arguments(["depth", "1x=2", "a=1", "a=2"])
    assert raised.value.lines() == [
        "arg: expected NAME=VALUE with NAME a Python name, got 'depth'",
        "arg: expected NAME=VALUE with NAME a Python name, got '1x=2'",
        "arg: a is given twice",
    ]


def test_flags_and_file_combined() -> None:
    flags, file = Inputs((InputSpec((3,)),)), Inputs((), {"mask": InputSpec((3,), "bool")})
    assert combined(flags, file) == Inputs((InputSpec((3,)),), {"mask": InputSpec((3,), "bool")})
    assert combined(None, file) == file and combined(flags, None) == flags
    with pytest.raises(SpecError, match="give the positional inputs in one place"):
        combined(flags, Inputs((InputSpec((2,)),)))


def test_inputs_file_yaml_and_json(tmp_path: Path) -> None:
    yaml_file = tmp_path / "inputs.yaml"
    yaml_file.write_text("args:\n  - 3x8x8\n  - {shape: [5]}\nkwargs:\n  mask: {shape: 16, dtype: bool}\n")
    assert load_inputs(yaml_file) == Inputs((InputSpec((3, 8, 8)), InputSpec((5,))), {"mask": InputSpec((16,), "bool")})
    json_file = tmp_path / "inputs.json"
    json_file.write_text(json.dumps({"kwargs": {"tokens": {"shape": [16], "dtype": "int64"}}}))
    assert load_inputs(json_file) == Inputs((), {"tokens": InputSpec((16,), "int64")})


def test_inputs_file_errors_name_file_line_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("kwargs:\n  image: {shape: 3x0x4}\n  mask: {shape: [4, 4], dtype: complex}\n  2d: 3\nargz: []\n")
    assert error_of(f"{M}:keyword_inputs", "--inputs", str(path)).splitlines() == [
        f"convcost: error: {path}:2: kwargs.image.shape: expected CxHxW with positive integers (e.g. 3x224x224), "
        "got '3x0x4'",
        f"convcost: error: {path}:3: kwargs.mask.dtype: must be one of {DTYPES}, got 'complex'",
        f"convcost: error: {path}:4: kwargs.2d: must be a Python name (a keyword argument)",
        f"convcost: error: {path}:5: argz: unknown key: expected args or kwargs; did you mean 'args'?",
    ]
    empty = tmp_path / "empty.json"
    empty.write_text("{}")
    assert error_of(f"{M}:keyword_inputs", "--inputs", str(empty)) == (
        f"convcost: error: {empty}: no inputs: give args and/or kwargs"
    )


# --- the CLI ---------------------------------------------------------------------------------------------------


def test_two_inputs() -> None:
    data = model_json(f"{M}:two_inputs", "--input", "3x8x8", "--input", "5", "--batch", "2")
    # conv 3→4, 3×3, on 8×8: 3*4*9*64 = 6,912 per image; vector 5*6 = 30; head 10*2 = 20 → 6,962 × batch 2
    assert data["total"]["macs"] == 2 * 6_962 == data["total"]["macs_flop_counter"] == data["total"]["macs_ptflops"]
    assert data["total"]["params"] == 108 + 30 + 20
    assert data["ok"] and data["input_shape"] == [2, 3, 8, 8] and data["output_shape_measured"] == [2, 2]
    assert data["settings"]["inputs"] == {"args[0]": {"shape": [2, 3, 8, 8], "dtype": None},
                                          "args[1]": {"shape": [2, 5], "dtype": None}}  # fmt: skip


def test_two_inputs_are_named_in_the_title_and_timed() -> None:
    result = runner.invoke(app, ["model", f"{M}:two_inputs", "--input", "3x8x8", "--input", "5", "--latency",
                                 "--rounds", "1", "--min-time", "0.001"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].startswith("two_inputs · tests.models_inputs:two_inputs · args[0] 1×3×8×8, "
                                                    "args[1] 1×5 · float32")  # fmt: skip
    assert result.stdout.splitlines()[1].rstrip().endswith("ms")  # the latency column


def test_token_model_with_int64_input() -> None:
    data = model_json(f"{M}:tokens", "--input", "16:int64", "--batch", "3")
    # the linear 8→4 on 3×16 tokens: 3*16*8*4 = 1,536 MACs; the embedding 100×8 has 800 params and no MACs
    assert data["total"]["macs"] == 1_536
    assert data["total"]["params_measured"] == 800 + 32
    assert data["output_shape_measured"] == [3, 16, 4]
    assert data["settings"]["inputs"] == {"args[0]": {"shape": [3, 16], "dtype": "int64"}}


def test_meta_with_integer_inputs() -> None:
    data = model_json(f"{M}:tokens", "--input", "16:int64", "--meta")
    assert data["total"]["macs"] == 16 * 8 * 4 and data["environment"]["device"] == "meta"


def test_dict_input_via_inputs_file(tmp_path: Path) -> None:
    path = tmp_path / "inputs.yaml"
    path.write_text("kwargs:\n  image: {shape: 3x4x4}\n  mask: {shape: [4, 4], dtype: bool}\n")
    data = model_json(f"{M}:keyword_inputs", "--inputs", str(path))
    # a 1×1 conv 3→2 on 4×4: 3*2*16 = 96 MACs, 6 params
    assert data["total"]["macs"] == 96 and data["total"]["params"] == 6
    assert data["output_shape_measured"] == [1, 2, 4, 4]


def test_input_flags_with_a_keyword_file(tmp_path: Path) -> None:
    path = tmp_path / "features.json"
    path.write_text('{"kwargs": {"features": {"shape": [5]}}}')
    data = model_json(f"{M}:two_inputs", "--input", "3x8x8", "--inputs", str(path))
    assert data["total"]["macs"] == 6_962  # as positional: the same model, the same sum


@pytest.mark.parametrize("factory", ["dict_output", "tuple_output", "dataclass_output", "namedtuple_output"])
def test_structured_outputs(factory: str) -> None:
    data = model_json(f"{M}:{factory}", "--input", "6", "--batch", "2")
    # trunk 6*8 = 48, logits 8*3 = 24, box 8*4 = 32: 104 params, 104 MACs per sample
    assert data["total"]["macs"] == 2 * 104 and data["total"]["params"] == 104 and data["ok"]
    outputs = {item["path"]: item["shape"] for item in data["outputs"]}
    expected = {
        "dict_output": {"output['logits']": [2, 3], "output['box']": [2, 4]},
        "tuple_output": {"output[0]": [2, 8], "output[1][0]": [2, 3], "output[1][1]": [2, 4]},
        "dataclass_output": {"output.logits": [2, 3], "output.box": [2, 4]},
        "namedtuple_output": {"output.logits": [2, 3], "output.box": [2, 4]},
    }[factory]
    assert outputs == expected
    assert not any("a scalar" in note for note in data["notes"])
    assert data["output_shape_measured"] == [2, 4]  # the last traced op's, which the model returns


def test_structured_output_latency() -> None:
    args = ["--input", "6", "--latency", "--rounds", "1", "--min-time", "0.001"]
    data = model_json(f"{M}:dict_output", *args)
    assert data["latency"]["median_ms"] > 0


def test_factory_arguments() -> None:
    args = ["--arg", "width=3", "--arg", "depth=3", "--arg", "bias=false", "--arg", "name=resnet18", "--input", "3"]
    data = model_json(f"{M}:mlp", *args)
    # three Linear(3, 3) without bias: 3*9 = 27 params, 27 MACs
    assert data["total"]["params"] == 27 and data["total"]["macs"] == 27
    assert data["settings"]["arguments"] == {"width": 3, "depth": 3, "bias": False, "name": "resnet18"}
    data = model_json(f"{M}:mlp", "--input", "4")  # the defaults: two Linear(4, 4) with bias: 2*(16+4) = 40
    assert data["total"]["params"] == 40


def test_input_errors() -> None:
    assert error_of(f"{M}:two_inputs", "--input", "3x8x8", "--input", "5:complex") == (
        f"convcost: error: --input: dtype must be one of {DTYPES}, got 'complex'"
    )
    assert error_of(f"{M}:two_inputs", "--input", "x") == (
        "convcost: error: --input: expected SHAPE[:DTYPE] with positive integers (e.g. 3x224x224 or 16:int64), got 'x'"
    )
    assert error_of(f"{M}:mlp", "--input", "4", "--arg", "depth") == (
        "convcost: error: --arg: expected NAME=VALUE with NAME a Python name, got 'depth'"
    )
    assert error_of(f"{M}:mlp", "--input", "4", "--arg", "widt=3") == (
        f"convcost: error: {M}:mlp: calling mlp(widt=3) failed: TypeError: mlp() got an unexpected keyword argument "
        "'widt'"
    )


def test_input_and_file_with_args_refused(tmp_path: Path) -> None:
    path = tmp_path / "two.json"
    path.write_text('{"args": ["3x8x8", [5]]}')
    assert error_of(f"{M}:two_inputs", "--input", "3x8x8", "--inputs", str(path)) == (
        "convcost: error: --input: and a --inputs file with args: give the positional inputs in one place (the "
        "file's args, or --input with the file's kwargs)"
    )
    assert model_json(f"{M}:two_inputs", "--inputs", str(path))["total"]["macs"] == 6_962


def test_model_file_refuses_import_path_flags() -> None:
    config = str(Path(__file__).resolve().parent.parent / "configs" / "mobilenet_v1.yaml")
    assert error_of(config, "--arg", "a=1") == (
        "convcost: error: --arg: is for import paths; a model file gives its own layers"
    )


def test_suggest_and_convert_take_factory_arguments(tmp_path: Path) -> None:
    result = runner.invoke(app, ["suggest", f"{M}:mlp", "--arg", "width=3", "--input", "3", "-f", "json"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["convert", f"{M}:mlp", "--arg", "depth=x", "--input", "3", "-o",
                                 str(tmp_path / "x.pt2")])  # fmt: skip
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"convcost: error: {M}:mlp: calling mlp(depth='x') failed: TypeError: 'str' object cannot be interpreted "
        "as an integer"
    )


def test_suggest_takes_one_float_input() -> None:
    result = runner.invoke(app, ["suggest", f"{M}:two_inputs", "--input", "3x8x8", "--input", "5"])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "convcost: error: --input: one input here (the convs replaced see one image); convcost model counts a "
        "model with more"
    )
    result = runner.invoke(app, ["suggest", f"{M}:tokens", "--input", "16:int64"])
    assert result.exit_code == 2
    assert result.stderr.strip() == "convcost: error: --input: runs in float32: drop :int64"


def test_meta_with_keyword_inputs_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "inputs.json"
    path.write_text('{"kwargs": {"image": {"shape": "3x4x4"}, "mask": {"shape": [4, 4], "dtype": "bool"}}}')
    data = model_json(f"{M}:keyword_inputs", "--inputs", str(path), "--meta", "--batch", "5")
    assert data["total"]["macs"] == 5 * 96 and data["environment"]["device"] == "meta"  # 5*3*2*16 = 480


def test_inputs_file_that_is_not_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "list.json"
    path.write_text("[1, 2]")
    assert error_of(f"{M}:keyword_inputs", "--inputs", str(path)) == (
        f"convcost: error: {path}: expected a mapping with args (a list) and/or kwargs (a mapping)"
    )
    missing = tmp_path / "missing.yaml"
    assert error_of(f"{M}:keyword_inputs", "--inputs", str(missing)) == f"convcost: error: {missing}: no such file"


def test_a_forward_that_rejects_an_input_dtype_names_the_inputs() -> None:
    message = error_of(f"{M}:two_inputs", "--input", "3x8x8", "--input", "5:int64")
    assert message.startswith(f"convcost: error: {M}:two_inputs: forward pass on input 1×3×8×8, 1×5 int64 failed:")
