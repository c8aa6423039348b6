"""`mspec compile FILE -b onnx -o model.onnx [--checkpoint CKPT]`, as a user runs it, on a real
`mspec train` checkpoint."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
from onnx_helpers import SPECS, floats

from modelspec.cli import main


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A `mspec train` run of the MLP, a few steps long: its checkpoint folder and the trained module."""
    import modelspec

    out = tmp_path_factory.mktemp("runs")
    assert main(["train", str(SPECS / "mlp_digits.mspec"), "--max-steps", "3", "--out", str(out), "--no-progress"]) == 0
    (checkpoint,) = out.glob("*/checkpoints/step-*")
    import torch
    from safetensors.torch import load_model

    module = modelspec.build(SPECS / "mlp_digits.mspec", seed=123).eval()
    load_model(module, str(checkpoint / "model.safetensors"))
    with torch.no_grad():
        assert not torch.equal(module.fc1.bias, modelspec.build(SPECS / "mlp_digits.mspec", seed=0).fc1.bias)
    return checkpoint, module


@pytest.mark.slow  # trains for a few seconds, once for the module
def test_compile_with_a_training_checkpoint(trained, tmp_path, capsys):
    checkpoint, module = trained
    out = tmp_path / "mlp.onnx"
    assert (
        main(
            ["compile", str(SPECS / "mlp_digits.mspec"), "-b", "onnx", "-o", str(out), "--checkpoint", str(checkpoint)]
        )
        == 0
    )
    assert f"wrote {out} (model MLP, backend onnx)" in capsys.readouterr().err
    import torch

    image = floats((6, 1, 28, 28))
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = module(torch.from_numpy(image)).numpy()
    np.testing.assert_allclose(session.run(None, {"image": image})[0], expected, atol=1e-5, rtol=1e-4)


def test_compile_without_a_checkpoint_seeds_the_weights(tmp_path):
    out = tmp_path / "gpt.onnx"
    assert main(["compile", str(SPECS / "gpt_tiny.mspec"), "-b", "onnx", "-o", str(out)]) == 0
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"tokens": np.zeros((1, 5), np.int64)})
    assert logits.shape == (1, 5, 96) and np.isfinite(logits).all()


def test_compile_to_stdout_is_refused(capsys):
    assert main(["compile", str(SPECS / "cnn.mspec"), "-b", "onnx"]) == 2
    assert "the onnx backend writes a binary file, not text for stdout: give -o FILE" in capsys.readouterr().err


@pytest.mark.slow
def test_a_checkpoint_of_another_model_is_refused(trained, tmp_path, capsys):
    checkpoint, _ = trained
    out = tmp_path / "cnn.onnx"
    assert (
        main(["compile", str(SPECS / "cnn.mspec"), "-b", "onnx", "-o", str(out), "--checkpoint", str(checkpoint)]) == 1
    )
    err = capsys.readouterr().err
    assert (
        f"Error: checkpoint {checkpoint / 'model.safetensors'} does not fit the model: `conv1.weight` is missing" in err
    )
    assert "Traceback" not in err and not out.exists()


def test_the_backend_is_registered_by_its_entry_point():
    from importlib.metadata import entry_points

    (entry,) = [e for e in entry_points(group="modelspec") if e.name == "onnx"]
    assert entry.value == "modelspec_onnx.plugin" and entry.dist.name == "modelspec-onnx"
    from modelspec.plugins import registry

    assert registry().backend("onnx").binary is True
    assert registry().lowering_owner[("onnx", "attention")] == "onnx"


def test_generate_is_the_graph_as_text_without_weights():
    from modelspec.api import compile_source

    text = compile_source(SPECS / "mlp_digits.mspec", backend_name="onnx")
    assert text.startswith("MLP (float[B,1,28,28] image) => (float[B,10] logits) {")
    assert 'Gemm <transB: int = 1> (flatten_2, "fc1.weight", "fc1.bias")' in text
    assert len(text) < 2000  # 100k parameters, none of them printed
