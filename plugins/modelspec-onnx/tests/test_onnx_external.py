"""Weights over the threshold (2 GB by default), or too many to fit protobuf's 2 GiB limit together
with the rest of the model, go to external data beside the .onnx file; a model that cannot be
serialised even so is a clear error. Here the threshold (or the limit) is lowered to a few kB so that
a small model takes those paths; a real model over 2 GB is exported by bench/external_data.py (about
a minute, see the README)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx_helpers import SPECS, floats

import modelspec
from modelspec.cli import main
from modelspec_onnx import SaveError, export, exporter, save
from modelspec_onnx.exporter import (
    EXTERNAL_DATA_THRESHOLD,
    PROTOBUF_LIMIT,
    external_data_needed,
    initializer_bytes,
    other_bytes,
)


@pytest.fixture
def cnn():
    # Saving with external data moves the weights out of the model: a fresh one for each test.
    return export(modelspec.load(SPECS / "cnn.mspec"), "CNN", seed=3)


def run(path, feeds):
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def test_weights_over_2_gb_or_too_many_for_one_message_go_out():
    assert (EXTERNAL_DATA_THRESHOLD, PROTOBUF_LIMIT) == (2_000_000_000, 2**31 - 1)
    assert not external_data_needed(2_000_000_000, other=10_000)
    assert external_data_needed(2_000_000_001, other=0)
    # The model: weights 8 bytes under 2 GiB, which the graph around them pushed over the limit.
    assert external_data_needed(2_147_483_640, other=0)
    # With a higher threshold the limit still holds, counting the rest of the model and a margin.
    far = 10**12
    assert not external_data_needed(2_000_000_000, other=100_000_000, threshold=far)
    assert external_data_needed(2_000_000_000, other=PROTOBUF_LIMIT - 2_000_000_000, threshold=far)
    assert external_data_needed(2_147_000_000, other=0, threshold=far)  # within the margin


def test_the_rest_of_the_model_is_counted_without_serialising_it(cnn):
    other = other_bytes(cnn)
    whole = len(cnn.SerializeToString())
    # an estimate from above of everything but the weights' values
    assert whole - initializer_bytes(cnn) <= other < whole - initializer_bytes(cnn) + 4096


def test_weights_that_fit_the_threshold_but_not_the_limit_go_out(cnn, tmp_path, monkeypatch):
    weights = initializer_bytes(cnn)
    monkeypatch.setattr(exporter, "PROTO_MARGIN", 0)
    monkeypatch.setattr(exporter, "PROTOBUF_LIMIT", weights + other_bytes(cnn) - 1)
    data = save(cnn, tmp_path / "tight.onnx")  # the default threshold: 2 GB
    assert data is not None and data.stat().st_size > 0.99 * weights
    onnx.checker.check_model(str(tmp_path / "tight.onnx"))


def _fails_to_serialise(*args, **kwargs):
    from google.protobuf.message import EncodeError

    raise EncodeError("Failed to serialize proto")


def test_a_model_that_cannot_be_serialised_is_a_clear_error(cnn, tmp_path, monkeypatch):
    monkeypatch.setattr(exporter.onnx, "save_model", _fails_to_serialise)
    with pytest.raises(SaveError) as caught:
        save(cnn, tmp_path / "cnn.onnx")
    message = str(caught.value)
    assert message.startswith(f"cannot write {tmp_path / 'cnn.onnx'}: the model does not serialise as an ONNX file")
    assert "EncodeError: Failed to serialize proto" in message and "2,147,483,647 bytes" in message
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind


def test_mspec_compile_reports_a_serialisation_failure_without_a_traceback(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(exporter.onnx, "save_model", _fails_to_serialise)
    out = tmp_path / "cnn.onnx"
    assert main(["compile", str(SPECS / "cnn.mspec"), "-b", "onnx", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "cannot write" in err and "EncodeError: Failed to serialize proto" in err
    assert "internal error" not in err and "Traceback" not in err and not out.exists()


def test_weights_over_the_threshold_go_to_a_data_file(cnn, tmp_path):
    weights = initializer_bytes(cnn)
    assert weights > 2_000_000
    inline, external = tmp_path / "inline.onnx", tmp_path / "external.onnx"
    assert save(cnn, inline) is None
    fc1 = onnx.numpy_helper.to_array(_named(cnn, "fc1.weight"))
    data = save(cnn, external, external_threshold=weights - 1)
    assert data == tmp_path / "external.onnx.data"
    assert external.stat().st_size < 100_000 < 0.99 * weights < data.stat().st_size  # tiny tensors stay inline
    assert not (tmp_path / "inline.onnx.data").exists()
    onnx.checker.check_model(str(external))  # by path: the checker reads the external data too
    feeds = {"image": floats((2, 3, 32, 32))}
    np.testing.assert_array_equal(run(external, feeds), run(inline, feeds))
    # Parameter names and values survive the trip through the data file.
    loaded = {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(str(external)).graph.initializer}
    np.testing.assert_array_equal(loaded["fc1.weight"], fc1)


def test_saving_again_replaces_the_data_file(cnn, tmp_path):
    path = tmp_path / "model.onnx"
    first = save(cnn, path, external_threshold=1024).stat().st_size
    again = export(modelspec.load(SPECS / "cnn.mspec"), "CNN", seed=3)
    assert save(again, path, external_threshold=1024).stat().st_size == first  # onnx would append to it
    onnx.checker.check_model(str(path))


def test_the_threshold_counts_bytes_of_weights(cnn, tmp_path):
    weights = initializer_bytes(cnn)
    assert save(cnn, tmp_path / "at.onnx", external_threshold=weights) is None
    assert save(cnn, tmp_path / "over.onnx", external_threshold=weights - 1) is not None


def _named(model, name):
    return next(t for t in model.graph.initializer if t.name == name)
