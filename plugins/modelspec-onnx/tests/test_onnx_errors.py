"""What the exporter cannot express is reported once, all of it; a checkpoint that does not fit
the model is refused naming the file and every mismatch."""

from __future__ import annotations

import numpy as np
import pytest

import modelspec
from modelspec.diagnostics import CompileError, render_all
from modelspec.hookspec import hookimpl
from modelspec.ops.base import OpSpec
from modelspec.plugins import PluginManager
from modelspec.semantics.analyse import analyse
from modelspec.semantics.loader import load_sources
from modelspec_onnx import CheckpointError, export


class Doubled(OpSpec):
    """A plugin's op with a shape rule but no ONNX lowering."""

    name = "doubled"
    summary = "x + x"

    def infer(self, inputs, args):
        return inputs[0]


class DoubledPlugin:
    @hookimpl
    def mspec_ops(self):
        return [Doubled()]


# Three calls the exporter cannot express, of three kinds: an op without an ONNX lowering,
# adaptive pooling to a size that does not divide the input, a sinusoidal table over a symbolic length.
SPEC = """model Net() {
    input image: float[B, 3, 7, 7]
    input seq: float[B, T, 8]
    pooled = image |> doubled |> adaptive_avgpool((3, 3)) |> flatten
    output y = pooled |> linear(4, name=head)
    output z = seq |> positional_encoding |> doubled
}
"""


@pytest.fixture(scope="module")
def program_and_registry():
    manager = PluginManager()
    manager.register(DoubledPlugin(), "doubled-plugin")
    sources = load_sources(text=SPEC, name="net.mspec")
    program, diagnostics = analyse(sources, manager.registry)
    assert not [d for d in diagnostics if d.severity.name == "ERROR"], diagnostics
    return program, manager.registry, sources.sources


def test_every_inexpressible_op_in_one_diagnostic(program_and_registry):
    program, registry, sources = program_and_registry
    with pytest.raises(CompileError) as caught:
        export(program, "Net", registry=registry)
    (diagnostic,) = caught.value.diagnostics
    assert diagnostic.code == "E0603"
    assert (
        diagnostic.message
        == "4 op calls cannot be exported to ONNX (`adaptive_avgpool`, `doubled`, `positional_encoding`)"
    )
    assert (diagnostic.primary.span.line, diagnostic.primary.span.column) == (4, 23)
    assert sorted((label.span.line, label.span.column) for label in diagnostic.secondary) == [(4, 34), (6, 23), (6, 46)]
    text = render_all([diagnostic], sources)
    assert "net.mspec:4:23" in text and "`doubled`: no ONNX lowering" in text
    assert "pools [7, 7] to (3, 3): ONNX needs input sizes that are known multiples of the output size" in text
    assert "`positional_encoding`: a sinusoidal table over a symbolic length needs `max_len`" in text
    assert diagnostic.notes == ("no backend lowers `doubled`",)


def test_one_inexpressible_op_reads_as_one(program_and_registry):
    program, registry, _ = program_and_registry
    text = SPEC.replace("|> adaptive_avgpool((3, 3)) ", "").replace("|> positional_encoding ", "")
    text = text.replace("|> doubled", "", 1).replace("output y = pooled |> linear(4, name=head)", "output y = pooled")
    program, diagnostics = analyse(load_sources(text=text, name="net.mspec"), registry)
    with pytest.raises(CompileError) as caught:
        export(program, "Net", registry=registry)
    (diagnostic,) = caught.value.diagnostics
    assert diagnostic.message == "the op `doubled` cannot be exported to ONNX"
    assert diagnostic.primary.message == "no ONNX lowering"
    assert diagnostic.primary.span.line == 6 and not diagnostic.secondary


def test_without_the_registrys_lowerings_no_op_exports(mlp):
    # The registry is the only source of lowerings: a manager without this plugin has none for onnx.
    registry = PluginManager(entry_points=False).registry
    with pytest.raises(CompileError) as caught:
        export(mlp, "MLP", registry=registry)
    (diagnostic,) = caught.value.diagnostics
    assert diagnostic.code == "E0603"
    assert "(`flatten`, `linear`, `relu`)" in diagnostic.message


def test_repeated_layers_are_reported_once(tmp_path):
    spec = tmp_path / "stack.mspec"
    spec.write_text(
        "model Stack() {\n    input x: float[B, T, 8]\n"
        "    repeat 4 as h {\n        x = x |> positional_encoding\n    }\n    output y = x\n}\n"
    )
    with pytest.raises(CompileError) as caught:
        export(modelspec.load(spec), "Stack")
    (diagnostic,) = caught.value.diagnostics
    assert "cannot be exported" in diagnostic.message and not diagnostic.secondary


# ---- checkpoints ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mlp():
    from onnx_helpers import SPECS

    return modelspec.load(SPECS / "mlp_digits.mspec")


def save_tensors(path, tensors):
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path))
    return path


def mlp_weights():
    return {
        "fc1.weight": np.zeros((128, 784), np.float32),
        "fc1.bias": np.zeros(128, np.float32),
        "fc2.weight": np.zeros((10, 128), np.float32),
        "fc2.bias": np.zeros(10, np.float32),
    }


def test_checkpoint_that_fits(mlp, tmp_path):
    weights = mlp_weights()
    weights["fc2.bias"] = np.arange(10, dtype=np.float32)
    folder = tmp_path / "step-00000010"
    folder.mkdir()
    save_tensors(folder / "model.safetensors", weights)
    import onnxruntime

    session = onnxruntime.InferenceSession(export(mlp, "MLP", checkpoint=folder).SerializeToString())
    (logits,) = session.run(None, {"image": np.ones((2, 1, 28, 28), np.float32)})
    np.testing.assert_array_equal(logits, np.tile(np.arange(10, dtype=np.float32), (2, 1)))


def test_checkpoint_mismatches_are_listed_together(mlp, tmp_path):
    weights = mlp_weights()
    del weights["fc1.bias"]
    weights["fc2.weight"] = np.zeros((10, 64), np.float32)
    weights["fc3.weight"] = np.zeros(3, np.float32)
    path = save_tensors(tmp_path / "other.safetensors", weights)
    with pytest.raises(CheckpointError) as caught:
        export(mlp, "MLP", checkpoint=path)
    assert str(caught.value) == (
        f"checkpoint {path} does not fit the model: `fc1.bias` is missing; "
        "`fc2.weight` has shape [10, 64], the model's is [10, 128]; "
        "it holds weights the model does not have: `fc3.weight`"
    )


@pytest.mark.parametrize("kind", ["missing", "empty folder", "not safetensors"])
def test_unreadable_checkpoints(mlp, tmp_path, kind):
    path = tmp_path / "ckpt"
    if kind == "empty folder":
        path.mkdir()
    elif kind == "not safetensors":
        path.write_bytes(b"\x00not a safetensors file")
    with pytest.raises(CheckpointError, match=f"checkpoint {path}") as caught:
        export(mlp, "MLP", checkpoint=path)
    assert {"missing": "does not exist", "empty folder": "has no model.safetensors"}.get(kind, "cannot read") in str(
        caught.value
    )
