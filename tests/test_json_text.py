"""`reclaim ... --format json` prints exactly what `json.dumps(doc, indent=2)` would: the fast
encoder (`analyzer.output.dumps_indented`) changes the time, never a character."""

from __future__ import annotations

import enum
import json
from typing import Any

import pytest

from analyzer import analyze
from analyzer.engines.registry import names
from analyzer.generate import generate_registry
from analyzer.output import dumps_indented


class Level(enum.IntEnum):
    HIGH = 3


HOSTILE: list[Any] = [
    {},
    [],
    (),
    "",
    0,
    -0.0,
    1e300,
    10**40,
    True,
    None,
    {"a": [], "b": {}, "c": [[[]]], "d": [{}]},
    ["plain", 'quote " and \\ backslash', "tab\tnewline\ncr\r", "\x00\x1f\x7f", "é ü 漢 😀"],
    {"é": "😀", 'key with "quote"': ["\u2028\u2029"]},
    [1, 2.5, None, True, False, "x", [1, [2, {"y": ()}]]],
    {"nan": float("nan"), "inf": [float("inf"), -float("inf")]},
    {7: "int key", 2.5: "float key", False: "bool key", None: "none key"},
    {"nested": {3: {"deeper": ("tuple", 1)}}},
    {"enum": Level.HIGH, "enums": [Level.HIGH]},
    (("a", "b"), ["c", ("d",)]),
    # lists of records (flat dicts with the same keys), printed through one template per list
    [{"repository": "a", "digest": "sha256:00"}, {"repository": "b%s", "digest": "%(x)s"}],
    [
        {"a": 1, "b": None, "c": True, "d": False, "e": "x"},
        {"a": -2, "b": "", "c": 0, "d": 1, "e": "y"},
    ],
    [{"a": "x", "b": 1}, {"b": 1, "a": "x"}, {"a": "x"}, {"a": "x", "b": 1, "c": 2}, {}],
    [{"a": 1.5, "b": "x"}, {"a": float("nan"), "b": "y"}, {"a": Level.HIGH, "b": "z"}],
    [{"a": [1, 2], "b": {"c": "d"}}, {"a": (), "b": {}}, {"a": "plain", "b": "x"}],
    [{"%s": "key with %", "%%": "two"}, {"%s": "x", "%%": "y"}],
    [{"k": 'é 😀 \u2028 " \\ \n'}, {"k": "tab\tnewline"}, "not a record", 3, None],
    [{7: "int key"}, {7: "again"}],
    [{}, {"a": "x"}, {"a": "y"}],
    [{"a": type("Text", (str,), {})("a str subclass")}, {"a": 10**40}],
    [{"a": "x"}, [{"a": "nested"}, {"a": "records"}]],
    # records of several shapes in one list, and lists of strings inside records (hazards)
    [
        {"type": "broken-index", "tags": ["main", 'q"uote'], "children": ["a", "b"]},
        {"type": "referrer", "subject": "x"},
        {"type": "broken-index", "tags": [], "children": ["c"]},
        {"type": "referrer", "subject": None},
        {"type": "broken-index", "tags": ["é 😀", "\n\t"], "children": []},
    ],
    [{"l": ["%s", "%%", "%(x)s"]}, {"l": ["a", 1]}, {"l": ["b", None]}, {"l": [["c"]]}],
    [{"l": ("tuple",)}, {"l": [type("Text", (str,), {})("sub")]}, {"l": ["plain"]}],
    [{"a": ["x"], "b": {"c": ["y"]}}, {"a": ["z"], "b": {"c": []}}],
    [[{"l": ["deep"]}, {"l": []}], {"l": ["shallow", "again"]}],
]


@pytest.mark.parametrize("doc", HOSTILE, ids=range(len(HOSTILE)))
def test_the_text_is_the_standard_librarys(doc: Any) -> None:
    assert dumps_indented(doc) == json.dumps(doc, indent=2)


def test_what_json_refuses_is_refused() -> None:
    for doc in ({"x": object()}, [b"bytes"], {"s": {1, 2}}):
        with pytest.raises(TypeError):
            json.dumps(doc, indent=2)
        with pytest.raises(TypeError):
            dumps_indented(doc)


@pytest.mark.parametrize("engine", names())
@pytest.mark.parametrize("delete_untagged", [False, True])
def test_predictions_print_as_the_standard_library_prints_them(
    engine: str, delete_untagged: bool
) -> None:
    inv = generate_registry(11, 6, 12).to_inventory()
    doc = analyze(inv, engine, delete_untagged).to_dict()
    assert doc["blobs_eligible"] or doc["manifests_eligible"]  # a document worth printing
    assert dumps_indented(doc) == json.dumps(doc, indent=2)


def test_written_piece_by_piece_it_is_the_same_text() -> None:
    from analyzer.output import _SPILL, write_indented

    doc = {"many": [{"n": i, "s": f"é{i}"} for i in range(_SPILL)], "last": HOSTILE}
    pieces: list[str] = []
    write_indented(doc, pieces.append)
    assert len(pieces) > 1  # written as it went, not held whole
    assert "".join(pieces) == json.dumps(doc, indent=2)
