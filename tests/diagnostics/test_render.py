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


def test_control_characters_in_text_from_a_spec_are_escaped():
    d = error(
        "E0308",
        'assertion failed: \x1b]0;title\x07\x1b[2J "\u202eevil"',
        Span("a.mspec", 1, 1, 1, 6),
        "label \x1b[31m",
        notes=["note \r\n"],
        help="help \x00 \udcff",
    )
    text = render(d, sources())
    assert "\x1b" not in text and "\x07" not in text and "\x00" not in text and "\u202e" not in text
    assert "assertion failed: \\x1b]0;title\\x07\\x1b[2J" in text and "\\u202eevil" in text
    assert "label \\x1b[31m" in text and "note \\r\\n" in text and "help \\x00 \\udcff" in text
    coloured = render(d, sources(), color=True)
    assert coloured.count("\x1b[") == coloured.count("\x1b[0m") * 2  # only the renderer's own colours
    assert "é 变 `x`" in render(error("E0201", "é 变 `x`", None), SourceMap())  # printable text stays as it is


def test_source_lines_are_split_once_per_text():
    s = sources()
    assert s.line("a.mspec", 3) == "}"
    assert s.line("a.mspec", 5) is None and s.line("b.mspec", 1) is None
    s.add("a.mspec", "other\r\ntext")
    assert (s.line("a.mspec", 1), s.line("a.mspec", 2)) == ("other", "text")


def test_suggestions_among_many_names_are_bounded_and_still_found():
    from modelspec.diagnostics.render import MAX_COMPARED, NameIndex, did_you_mean

    names = [f"v{k}" for k in range(5000)] + ["learning_rate", "discriminator", "Hidden", "val_accuracy"]
    index = NameIndex(names)
    assert len(index) == len(names)
    for typo, meant in [
        ("learnig_rate", "learning_rate"),
        ("disc", "discriminator"),
        ("hidden", "Hidden"),
        ("accuracy", "val_accuracy"),
    ]:
        assert len(index.plausible(typo)) <= MAX_COMPARED
        assert meant in did_you_mean(typo, index), typo
        assert meant in did_you_mean(typo, names), typo  # a plain collection is indexed on the fly
    assert did_you_mean("v12", index)[0] == "v12"
    # Few names: every one is compared, as difflib alone would.
    assert suggestion("lineer", NameIndex(["linear", "relu"])) == "did you mean `linear`?"
