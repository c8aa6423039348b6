"""Symbolic sizes of a spec stay symbolic in the exported graph: one file runs at every batch size
and sequence length the spec allows, and matches torch at each."""

from __future__ import annotations

import onnx
import pytest
from onnx_helpers import floats, tokens


def dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def test_inputs_and_outputs_keep_the_specs_size_names(reference):
    graph = onnx.load(str(reference("gpt_tiny.mspec").path)).graph
    assert [dims(i) for i in graph.input] == [["B", "T"]]
    assert [(o.name, dims(o)) for o in graph.output] == [("logits", ["B", "T", 96])]
    graph = onnx.load(str(reference("cnn.mspec").path)).graph
    assert [dims(i) for i in graph.input] == [["B", 3, 32, 32]]


@pytest.mark.parametrize(("batch", "length"), [(1, 1), (2, 7), (5, 64), (3, 33)])
def test_gpt_tiny_at_several_batch_sizes_and_lengths(reference, batch, length):
    out = reference("gpt_tiny.mspec").compare({"tokens": tokens((batch, length), vocab=96, seed=batch + length)})
    assert out.shape == (batch, length, 96)


@pytest.mark.parametrize("batch", [1, 4, 9])
def test_cnn_at_several_batch_sizes(reference, batch):
    out = reference("cnn.mspec").compare({"image": floats((batch, 3, 32, 32), seed=batch)})
    assert out.shape == (batch, 10)


SEQUENCE_SPEC = """
model Seq(width: int = 16) {
    input x: float[B, T, 8]
    h = x |> linear(width, name=inp) |> gelu(approximate="tanh")
    half = h |> reshape(B, T * 2, width // 2) |> rmsnorm(name=norm) |> reshape(B, T, width)
    pooled = half |> transpose(1, 2) |> maxpool1d(2, ceil_mode=false)
    across = pooled |> permute(0, 2, 1) |> mean(1) |> reshape(B, width, 1)
    output y = concat(pooled |> mean(2, keepdim=true), across, dim=2)
}
"""


@pytest.mark.parametrize(("batch", "length"), [(1, 2), (3, 10), (4, 31)])
def test_sizes_computed_from_symbols_at_run_time(tmp_path, batch, length):
    """`reshape(B, T * 2, ...)` needs B and T*2 while running: they are read off the input's shape."""
    import numpy as np
    import onnxruntime
    import torch

    import modelspec
    from modelspec_onnx import export, save

    (tmp_path / "seq.mspec").write_text(SEQUENCE_SPEC)
    program = modelspec.load(tmp_path / "seq.mspec")
    module = modelspec.build(program, "Seq", seed=0).eval()
    from safetensors.torch import save_model

    save_model(module, str(tmp_path / "model.safetensors"))
    save(export(program, "Seq", checkpoint=tmp_path / "model.safetensors"), tmp_path / "seq.onnx")
    session = onnxruntime.InferenceSession(str(tmp_path / "seq.onnx"), providers=["CPUExecutionProvider"])
    x = floats((batch, length, 8), seed=length)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    (got,) = session.run(None, {"x": x})
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-4)
