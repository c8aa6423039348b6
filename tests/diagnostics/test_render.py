"""The renderer: rustc-style text and JSON."""

import json

from modelspec.diagnostics import Label, SourceMap, Span, error, render, render_json, suggestion


def sources():
    s = SourceMap()
    s.add("a.mspec", "model M() {\n    output logits = x |> linear(64*6*6 -> 128)\n}\n")
    return s


def test_render_primary_secondary_notes_help():
    d = error(
        "E0301",
        "`linear` declares 2304 input features but receives 4096",
        Span("a.mspec", 2, 33, 2, 39),
        "declared here",
        secondary=[Label(Span("a.mspec", 1, 7, 1, 8), "model here")],
        notes=["`x` is float[B, 4096]"],
        help="drop the input size: `linear(128)`",
    )
    assert render(d, sources()) == (
        "error[E0301]: `linear` declares 2304 input features but receives 4096\n"
        " --> a.mspec:2:33\n"
        "  |\n"
        "2 |     output logits = x |> linear(64*6*6 -> 128)\n"
        "  |                                 ^^^^^^ declared here\n"
        "  |\n"
        "1 | model M() {\n"
        "  |       - model here\n"
        "  = note: `x` is float[B, 4096]\n"
        "  = help: drop the input size: `linear(128)`"
    )


def test_render_without_span():
    assert render(error("E0005", "cannot read `x`", None), SourceMap()) == "error[E0005]: cannot read `x`"


def test_json_fields():
    d = error("E0301", "m", Span("a.mspec", 2, 33, 2, 39), "l", help="h")
    (item,) = json.loads(render_json([d]))
    assert item == {
        "severity": "error",
        "code": "E0301",
        "message": "m",
        "file": "a.mspec",
        "line": 2,
        "column": 33,
        "end_line": 2,
        "end_column": 39,
        "notes": ["help: h"],
    }


def test_suggestions():
    assert suggestion("lineer", ["linear", "relu"]) == "did you mean `linear`?"
    assert suggestion("zzz", ["linear"]) is None
