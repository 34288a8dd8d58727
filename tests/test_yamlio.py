"""convcost.spec.yamlio: safe loading, value lines, duplicate keys, YAML 1.1 traps, typo suggestions."""

from __future__ import annotations

from pathlib import Path

import pytest

from convcost.errors import FieldIssue, SpecError
from convcost.spec import yamlio, yamlvalues
from convcost.spec.compare import CompareSpec


def lines_of(error: SpecError) -> list[str]:
    return error.lines()


def test_lines_of_values_and_keys() -> None:
    document = yamlio.loads("layers:\n  - cin: 8\n    cout: 64\n  - cin: 16\n", "f.yaml")
    assert document.data == {"layers": [{"cin": 8, "cout": 64}, {"cin": 16}]}
    assert document.line(("layers", 0, "cout")) == 3
    assert document.line(("layers", 1)) == 4
    # a path that does not exist falls back to its closest enclosing value
    assert document.line(("layers", 1, "kernel")) == 4
    assert document.key_line(("layers", 0, "cout")) == 3


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("cin: !!python/object/apply:os.system ['echo unsafe']\n",
         "f.yaml:1: cin: YAML tag !!python/object/apply:os.system is not allowed here: write plain values"),
        ("cin: !!python/name:os.system\n",
         "f.yaml:1: cin: YAML tag !!python/name:os.system is not allowed here: write plain values"),
        ("a: 1\n!!python/tuple [1]: 3\n", "f.yaml:2: YAML tag !!python/tuple is not allowed here: write plain values"),
        ("a:\n  b: !custom 3\n", "f.yaml:2: a.b: YAML tag !custom is not allowed here: write plain values"),
    ],
)  # fmt: skip
def test_tags_beyond_plain_yaml_are_refused_with_a_line(text: str, line: str) -> None:
    # the safe loader never runs code; a python/apply sequence would otherwise be read as a plain list
    with pytest.raises(SpecError) as caught:
        yamlio.loads(text, "f.yaml")
    assert lines_of(caught.value) == [line]


def test_explicit_plain_tags_and_merge_keys_are_fine() -> None:
    document = yamlio.loads("base: &b {kernel: 3}\nlayer:\n  <<: *b\n  cin: 8\npadding: !!str 0x1\n")
    assert document.data["layer"] == {"kernel": 3, "cin": 8}
    assert document.data["padding"] == "0x1"


def test_duplicate_keys_are_rejected_with_both_lines() -> None:
    with pytest.raises(SpecError) as caught:
        yamlio.loads("cin: 8\ncout: 64\ncin: 16\n", "f.yaml")
    assert lines_of(caught.value) == ["f.yaml:3: cin: duplicate key (first given on line 1)"]


@pytest.mark.parametrize("check_lines", [False, True])
def test_a_key_named_key_does_not_take_another_keys_line(check_lines: bool) -> None:
    # key lines were kept beside value lines under ("key", *place): key.a's value took the place of key a's line
    text = "a: 1\nkey: {a: 2}\n"
    document = yamlio.loads(text, "f.yaml")
    if check_lines:  # read from composed nodes, as a file with an issue is
        document = yamlio.loads(text + "x: 0x1\n", "f.yaml", keep_issues=True)
    assert document.key_line(("a",)) == 1 and document.line(("key", "a")) == 2
    with pytest.raises(SpecError) as caught:
        yamlio.loads(text + "a: 3\n", "f.yaml")
    assert lines_of(caught.value) == ["f.yaml:3: a: duplicate key (first given on line 1)"]


@pytest.mark.parametrize(
    ("text", "number"),
    [("0x1", 1), ("010", 8), ("1_000", 1000), ("1:30", 90)],
)
def test_yaml11_integers_that_are_probably_not_meant(text: str, number: int) -> None:
    with pytest.raises(SpecError) as caught:
        yamlio.loads(f"padding: {text}\n", "f.yaml")
    (line,) = lines_of(caught.value)
    assert line.startswith(f"f.yaml:1: padding: YAML 1.1 reads {text} as the number {number}: ")


def test_quoted_and_decimal_values_are_left_alone() -> None:
    document = yamlio.loads("a: '0x1'\nb: 10\nc: -3\nd: 1e6\n")
    # 1e6 has no dot, so YAML 1.1 keeps it a string: the spec validators explain it where a number is expected
    assert document.data == {"a": "0x1", "b": 10, "c": -3, "d": "1e6"}


def test_keep_issues_returns_the_document_with_its_problems() -> None:
    document = yamlio.loads("cin: 8\ncin: 9\npadding: 0x1\n", "f.yaml", keep_issues=True)
    assert document.data == {"cin": 8, "padding": 1}
    assert [(issue.loc, issue.line) for issue in document.issues] == [(("cin",), 2), (("padding",), 3)]


def test_boolean_keys_are_named() -> None:
    with pytest.raises(SpecError) as caught:
        yamlio.loads("off: 1\n", "f.yaml")
    assert lines_of(caught.value) == ["f.yaml:1: key 'off' reads as a boolean in YAML 1.1: quote it"]


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        yamlio.load(tmp_path / "missing.yaml", display="missing.yaml")
    assert lines_of(caught.value) == ["missing.yaml: no such file"]
    with pytest.raises(SpecError) as caught:
        yamlio.load(tmp_path)
    assert lines_of(caught.value)[0].endswith("is a directory, not a YAML file")
    (tmp_path / "latin1.yaml").write_bytes(b"name: caf\xe9\n")
    with pytest.raises(SpecError) as caught:
        yamlio.load(tmp_path / "latin1.yaml", display="latin1.yaml")
    assert lines_of(caught.value)[0].startswith("latin1.yaml: not UTF-8 text")


def test_validate_places_issues_and_suggests_keys() -> None:
    document = yamlio.loads("cin: 8\ncout: 64\nkernal: 3\nact: off\n", "f.yaml")
    spec, issues = yamlio.validate(CompareSpec, document.data, document)
    assert spec is None
    assert sorted(SpecError(issues, "f.yaml").lines()) == [
        "f.yaml:1: kernel: required",  # missing: placed on its enclosing mapping's line
        "f.yaml:3: kernal: unknown key; did you mean 'kernel'?",
        "f.yaml:4: act: got boolean false (YAML reads off/no/on/yes as booleans): write none or quote it",
    ]


def test_suggest() -> None:
    assert yamlio.suggest("kernal", ["kernel", "stride"]) == "kernel"
    assert yamlio.suggest("zzz", ["kernel", "stride"]) is None


def test_a_mappings_own_key_overrides_a_merged_one() -> None:
    text = "base: &b {cin: 8, cout: 64, kernel: 3}\nlayers:\n  - {name: x, <<: *b, cin: 4}\n"
    assert yamlio.loads(text).data["layers"][0] == {"name": "x", "cin": 4, "cout": 64, "kernel": 3}


def test_alias_bomb_is_refused_quickly() -> None:
    # each level holds 9 aliases of the one before: 9**7 ≈ 4.8 million values from 8 short lines
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 8):
        refs = ", ".join([f"*a{level - 1}"] * 9)
        lines.append(f"a{level}: &a{level} [{refs}]")
    with pytest.raises(SpecError) as caught:
        yamlio.loads("\n".join(lines) + "\n", "bomb.yaml")
    (line,) = caught.value.lines()
    assert line.startswith("bomb.yaml:") and "more than 200,000 values once aliases are expanded" in line


def _plain_and_nodes(text: str) -> tuple[str | None, str, dict[yamlio.Loc, int], list[FieldIssue]]:
    """The file read by PlainBuilder (None where it gives up), and from composed nodes with its lines and issues."""
    try:
        plain = repr(yamlvalues.PlainBuilder(text, yamlio._Loader, yamlio.MAX_VALUES, yamlio.MAX_DEPTH).read())
    except yamlvalues.Unusual:
        plain = None
    lines: dict[yamlio.Loc, int] = {}
    issues: list[FieldIssue] = []
    loader = yamlio._Loader(text)
    node = loader.get_single_node()
    builder = yamlvalues.NodeBuilder(loader, lines, {}, issues, yamlio.MAX_VALUES, yamlio.MAX_DEPTH)
    data = builder.value(node, ()) if node is not None else None
    return plain, repr(data), lines, issues


@pytest.mark.parametrize(
    "text",
    [
        "--- 3\n", "a: 1\nb: [1, {c: d}]\n", "{a, b}\n", "a: 2001-01-01\nb: .nan\nc: ~\nd: -0\ne: +5\n",
        "? 1\n: 1.5\nb: yes\nc: '0x1'\nd: \"x\"\ne: []\nf: {}\n", "- [[1, 2], [3]]\n- - -1\n  - x: 0\n",
    ],
)  # fmt: skip
def test_a_plain_file_reads_from_its_events_as_from_composed_nodes(text: str) -> None:
    plain, nodes, lines, issues = _plain_and_nodes(text)
    assert plain == nodes and not issues
    document = yamlio.loads(text, "f.yaml")
    assert document.known is None  # read from the events: its lines are read again when asked for
    assert document.lines == lines and document.line(()) == 1


@pytest.mark.parametrize(
    "text",
    [
        "", "# nothing\n", "a: !!str\n", "!!map {a: 1}\n", "a: ! 1\n", "a: &x 1\nb: *x\n", "a: 1\n---\nb: 2\n",
        "base: {k: 3}\nlayer: {<<: {k: 4}, cin: 8}\n", "- =\n", "cin: 8\ncin: 9\n", "padding: 0x1\n", "- 010\n",
        "off: 1\n", "~: 1\n", "1.5: 1\n", "? [1, 2]\n: {x: 1}\n", "a: !custom [1]\n", "e: " + "9" * 5000 + "\n",
        "? " + "9" * 5000 + "\n: 1\n", "a: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n", "[[[[[[1]]]]]]\n", "a: [1\n",
    ],
)  # fmt: skip
def test_any_other_file_is_read_from_composed_nodes(text: str) -> None:
    # an empty file, tags, anchors, merge keys, issues, values past the caps (10 and 5 deep here), invalid YAML
    limits = yamlio.MAX_VALUES, yamlio.MAX_DEPTH
    yamlio.MAX_VALUES, yamlio.MAX_DEPTH = 10, 5
    try:
        with pytest.raises(yamlvalues.Unusual):
            yamlvalues.PlainBuilder(text, yamlio._Loader, yamlio.MAX_VALUES, yamlio.MAX_DEPTH).read()
    finally:
        yamlio.MAX_VALUES, yamlio.MAX_DEPTH = limits


def test_the_plain_builder_gives_up_at_the_value_cap_not_at_the_end_of_the_file() -> None:
    # a 16 MiB file of "- x" lines holds 4 million values: building them all before giving up would take seconds
    builder = yamlvalues.PlainBuilder("- x\n" * 1000 + "- {a: 1}\n" * 1000, yamlio._Loader, 10, 5)
    with pytest.raises(yamlvalues.Unusual):
        builder.read()
    assert builder.left == -1  # the list and 9 items read, the 10th item refused
    builder = yamlvalues.PlainBuilder("- {a: 1}\n" * 1000, yamlio._Loader, 10, 5)
    with pytest.raises(yamlvalues.Unusual):
        builder.read()
    assert builder.left == -1


def test_every_bundled_config_is_plain() -> None:
    # the fast path is the one real files take: a config that falls back to composed nodes is slower to read
    for path in sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.yaml")):
        assert yamlio.load(path).known is None, path


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("a: !!bool maybe\n", "maybe"),  # PyYAML's bool constructor raised KeyError
        ("a: !!timestamp x\n", "x"),  # AttributeError
        ("a: !!int x\n", "x"),  # ValueError
        ("a: &t 2001-13-45\nb: *t\n", "2001-13-45"),  # the alias to it was a "recursive node"
    ],
)
def test_a_malformed_tagged_scalar_is_its_text_for_the_validators(text: str, value: str) -> None:
    document = yamlio.loads(text, "f.yaml")
    assert document.data["a"] == value
    assert document.data.get("b", value) == value


@pytest.mark.parametrize("merge", ["1", "[1]", "x"])
def test_a_merge_key_without_a_mapping_is_named_with_its_line(merge: str) -> None:
    with pytest.raises(SpecError) as raised:
        yamlio.loads(f"first: 1\nsecond: {{<<: {merge}}}\n", "f.yaml")  # PyYAML raised ConstructorError
    assert lines_of(raised.value) == ["f.yaml:2: second: a merge key (<<) takes a mapping or a list of mappings"]


@pytest.mark.parametrize(
    ("text", "line", "code"), [("name: x\x07\n", 1, "0007"), ("a: 1\nb: 2\nc: [1, 'x\x01']\n", 3, "0001")]
)
def test_a_control_character_is_refused_on_its_line(text: str, line: int, code: str) -> None:
    # PyYAML's reader says "position N" in a second line, which the one-line error printed as a literal \n
    with pytest.raises(SpecError) as caught:
        yamlio.loads(text, "f.yaml")
    assert str(caught.value) == (
        f"f.yaml:{line}: invalid YAML: unacceptable character #x{code}: control characters are not allowed"
    )
