"""`convcost schema`: the JSON Schema of batch files describes what the loader accepts, no more and no less.

No JSON Schema library is installed, so a small checker for the keywords the schema uses lives here; it refuses
any keyword it does not know, so the schema cannot grow past what is tested.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from convcost.errors import SpecError
from convcost.spec.batch import DESCRIPTIONS, json_schema, loads_batch
from convcost.spec.compare import CompareSpec

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
SCHEMA = json_schema()
KNOWN = {
    "$schema", "$defs", "$ref", "title", "description", "default", "type", "properties", "required",
    "additionalProperties", "items", "prefixItems", "minItems", "maxItems", "anyOf", "enum", "const", "pattern",
    "minimum",
}  # fmt: skip
TYPES = {"object": dict, "array": list, "string": str, "boolean": bool}


def errors(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Where ``value`` breaks ``schema`` (empty when it conforms)."""
    unknown = set(schema) - KNOWN
    assert not unknown, f"keywords the test checker does not know: {unknown}"
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/$defs/")
        return errors(value, SCHEMA["$defs"][name], path)
    if "anyOf" in schema:
        if any(not errors(value, option, path) for option in schema["anyOf"]):
            return []
        return [f"{path}: matches none of the alternatives"]
    kind = schema.get("type")
    if kind == "integer":
        if not isinstance(value, int) or isinstance(value, bool):
            return [f"{path}: not an integer"]
    elif kind is not None and not isinstance(value, TYPES[kind]):
        return [f"{path}: not {kind}"]
    if "const" in schema and value != schema["const"]:
        return [f"{path}: not {schema['const']!r}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{path}: not one of {schema['enum']}"]
    if "minimum" in schema and value < schema["minimum"]:
        return [f"{path}: below {schema['minimum']}"]
    if "pattern" in schema and not re.search(schema["pattern"], value):
        return [f"{path}: does not match {schema['pattern']}"]
    found: list[str] = []
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", len(value)):
            found.append(f"{path}: wrong number of items")
        for index, item in enumerate(value):
            if "items" in schema:
                found += errors(item, schema["items"], f"{path}[{index}]")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        found += [f"{path}.{key}: required" for key in schema.get("required", []) if key not in value]
        for key, item in value.items():
            if key in properties:
                found += errors(item, properties[key], f"{path}.{key}")
            elif schema.get("additionalProperties") is False:
                found.append(f"{path}.{key}: unknown key")
    return found


def accepted_by_convcost(text: str) -> bool:
    try:
        found = loads_batch(text)
    except SpecError:
        return False
    return not found.issues


def test_shipped_schema_file_is_up_to_date() -> None:
    shipped = json.loads((CONFIGS / "batch.schema.json").read_text(encoding="utf-8"))
    assert shipped == SCHEMA, "regenerate it: convcost schema -o configs/batch.schema.json"


def test_entries_have_every_compare_option_each_described() -> None:
    entry = SCHEMA["$defs"]["LayerEntry"]
    assert set(entry["properties"]) == set(CompareSpec.model_fields)
    assert "required" not in entry  # cin, cout and kernel may come from defaults
    for name, field in entry["properties"].items():
        assert field.get("description") == DESCRIPTIONS[name], name
    assert set(SCHEMA["$defs"]["LayerDefaults"]["properties"]) == set(CompareSpec.model_fields) - {"name"}
    for name in ("BatchFile", "LayerEntry", "LayerDefaults", "StageOverride"):
        definition = SCHEMA if name == "BatchFile" else SCHEMA["$defs"][name]
        assert definition["additionalProperties"] is False, name
    text = json.dumps(SCHEMA)
    assert '"null"' not in text and '"default": null' not in text


@pytest.mark.parametrize("name", ["seeds.yaml", "mistakes.yaml", "mobilenet_v1_layers.yaml"])
def test_shipped_configs_conform(name: str) -> None:
    data = yaml.safe_load((CONFIGS / name).read_text(encoding="utf-8"))
    assert errors(data, SCHEMA) == []


@pytest.mark.parametrize(
    "entry",
    [
        "{cin: 8, cout: 8, kernel: 3}",
        "{cin: 8, cout: 8, kernel: 3x5}",
        "{cin: 8, cout: 8, kernel: '3 × 5'}",
        "{cin: 8, cout: 8, kernel: [3, 5], padding: same}",
        "{cin: 8, cout: 8, kernel: 3, padding: [0, 1], stride: 2x1, dilation: 1}",
        "{cin: 8, cout: 8, kernel: 3, vs: 'separable, grouped', groups: 2}",
        "{cin: 8, cout: 8, kernel: 3, vs: [spatial], row: {padding: 1}, norm: batch, act: relu6}",
        "{cin: 8, cout: 8, kernel: 3, size: 32x16, batch: 2, bias: false, name: a}",
        "{cin: 8, cout: 16, kernel: 3, vs: [depthwise], multiplier: 2}",
    ],
)
def test_schema_accepts_what_convcost_accepts(entry: str) -> None:
    text = f"layers:\n  - {entry}\n"
    assert errors(yaml.safe_load(text), SCHEMA) == []
    assert accepted_by_convcost(text)


@pytest.mark.parametrize(
    ("entry", "issue"),
    [
        # every value is valid on its own: only the combination is wrong, which a JSON Schema cannot say
        ("{cin: 8, cout: 16, kernel: 3, vs: [depthwise]}", "depthwise needs cout = multiplier × cin = 1 × 8 = 8"),
        ("{cin: 8, cout: 8, kernel: 3, vs: [grouped], groups: 3}", "cin (8) and cout (8) must both be divisible by 3"),
    ],
)
def test_schema_accepts_combinations_only_convcost_refuses(entry: str, issue: str) -> None:
    text = f"layers:\n  - {entry}\n"
    assert errors(yaml.safe_load(text), SCHEMA) == []
    found = loads_batch(text).issues
    assert len(found) == 1 and issue in found[0].message, found


@pytest.mark.parametrize(
    "entry",
    [
        "{cin: 8, cout: 8, kernal: 3}",
        "{cin: 0, cout: 8, kernel: 3}",
        "{cin: 8, cout: 8, kernel: 3y5}",
        "{cin: 8, cout: 8, kernel: [3, 5, 7]}",
        "{cin: 8, cout: 8, kernel: 3, padding: -1}",
        "{cin: 8, cout: 8, kernel: 3, vs: 'separabel'}",
        "{cin: 8, cout: 8, kernel: 3, vs: []}",
        "{cin: 8, cout: 8, kernel: 3, act: off}",
        "{cin: 8, cout: 8, kernel: 3, norm: layer}",
        "{cin: 8, cout: 8, kernel: 3, pointwise: {paddin: 1}}",
        "{cin: 8, cout: 8, kernel: 3, bias: 'no'}",
        "{cin: 8, cout: 8, kernel: 3, device: tpu}",
    ],
)
def test_schema_refuses_what_convcost_refuses(entry: str) -> None:
    text = f"layers:\n  - {entry}\n"
    assert errors(yaml.safe_load(text), SCHEMA) != []
    assert not accepted_by_convcost(text)


def test_file_level_shape() -> None:
    assert errors({"layers": []}, SCHEMA) != []
    assert errors({"version": 2, "layers": [{"cin": 8}]}, SCHEMA) != []
    assert errors({"defaults": {"name": "x"}, "layers": [{"cin": 8}]}, SCHEMA) != []
    assert errors({"version": 1, "defaults": {"kernel": 3}, "layers": [{"cin": 8, "cout": 8}]}, SCHEMA) == []
