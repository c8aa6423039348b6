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


def test_argument_types_read_as_written_never_as_pydantic_reprs():
    from modelspec.cli.ops import op_details

    for op in registry().ops.values():
        for argument in op_details(registry(), op)["arguments"]:
            for noise in ("FieldInfo", "annotation=", "Annotated", "Union[", "typing.", "<class"):
                assert noise not in argument["type"], (op.name, argument)
    conv2d = {a["name"]: a["type"] for a in op_details(registry(), registry().op("conv2d"))["arguments"]}
    assert conv2d["kernel"] == "int | tuple[int, int]"
    assert conv2d["padding"] == "int | tuple[int, int] | Literal['same', 'valid']"
    maxpool1d = {a["name"]: a["type"] for a in op_details(registry(), registry().op("maxpool1d"))["arguments"]}
    assert maxpool1d["stride"] == "int | tuple[int] | None"
    reshape = {a["name"]: a["type"] for a in op_details(registry(), registry().op("reshape"))["arguments"]}
    assert reshape["shape"] == "tuple[size, ...]"
    assert "FieldInfo" not in render() and "annotation=" not in render()
