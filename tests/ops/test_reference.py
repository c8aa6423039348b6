"""docs/language.md's op reference is generated from the OpSpecs and kept current."""

from pathlib import Path

from modelspec.ops.reference import BEGIN, END, render, signature
from modelspec.plugins import registry

DOC = Path(__file__).parent.parent.parent / "docs" / "language.md"


def test_language_reference_lists_every_op_and_is_current():
    text = DOC.read_text()
    generated = text[text.index(BEGIN) : text.index(END) + len(END)] + "\n"
    assert generated == render(), "run `python -m modelspec.ops.reference --write`"
    builtin = [name for name, owner in registry().op_owner.items() if registry().is_builtin(owner)]
    assert len(builtin) == 45
    for name in builtin:
        assert f"#### `{name}`" in text


def test_signature():
    assert signature(registry().op("linear")) == "linear(x, out_features, in_features=—, bias=true, tie=—)"
