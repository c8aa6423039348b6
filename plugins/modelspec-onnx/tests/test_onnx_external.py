"""Weights over the threshold (2 GB by default, the protobuf limit) go to external data beside the
.onnx file. Here the threshold is lowered to a few kB so that a small model takes that path; a real
model over 2 GB is exported by bench/external_data.py (about a minute, see the README)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx_helpers import SPECS, floats

import modelspec
from modelspec_onnx import export, save
from modelspec_onnx.exporter import EXTERNAL_DATA_THRESHOLD, initializer_bytes


@pytest.fixture
def cnn():
    # Saving with external data moves the weights out of the model: a fresh one for each test.
    return export(modelspec.load(SPECS / "cnn.mspec"), "CNN", seed=3)


def run(path, feeds):
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def test_the_default_threshold_is_the_protobuf_limit():
    assert EXTERNAL_DATA_THRESHOLD == 2 * 1024**3


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
