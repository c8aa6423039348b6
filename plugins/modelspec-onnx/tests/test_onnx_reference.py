"""The exported ONNX files compute what the torch backend computes, on the same weights."""

from __future__ import annotations

import numpy as np
import pytest
from onnx_helpers import floats, tokens

CASES = [
    ("mlp_digits.mspec", None, {"image": (4, 1, 28, 28)}),
    ("cnn.mspec", None, {"image": (3, 3, 32, 32)}),
    ("dcgan.mspec", "Generator", {"noise": (5, 100, 1, 1)}),
    ("dcgan.mspec", "Discriminator", {"image": (5, 1, 16, 16)}),
    ("resnet18.mspec", None, {"image": (1, 3, 224, 224)}),
]


@pytest.mark.parametrize(("spec", "model", "shapes"), CASES, ids=[f"{s}:{m or ''}" for s, m, _ in CASES])
def test_same_outputs_as_torch(reference, spec, model, shapes):
    ref = reference(spec, model)
    out = ref.compare({name: floats(shape) for name, shape in shapes.items()})
    assert np.isfinite(out).all() and np.abs(out).max() > 0


def test_gpt_tiny_same_logits_as_torch(reference):
    ref = reference("gpt_tiny.mspec")
    logits = ref.compare({"tokens": tokens((2, 17), vocab=96)})
    # Causal: changing a later token leaves the logits of earlier positions as they were.
    changed = tokens((2, 17), vocab=96)
    changed[:, 10] = (changed[:, 10] + 1) % 96
    (again,) = ref.session.run(None, {"tokens": changed})
    np.testing.assert_allclose(again[:, :10], logits[:, :10], atol=1e-6)
    assert not np.allclose(again[:, 10:], logits[:, 10:])


@pytest.mark.parametrize(("spec", "model"), [("dcgan.mspec", "Discriminator"), ("gpt_tiny.mspec", None)])
def test_initializers_are_the_state_dict_under_its_keys(reference, spec, model):
    import onnx
    from onnx import numpy_helper

    ref = reference(spec, model)
    stored = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(ref.path)).graph.initializer}
    state = ref.module.state_dict()
    # A tied weight is stored once, under its owner's key; batch norm's step counter is not needed.
    expected = {k for k in state if not k.endswith("num_batches_tracked") and k != "lm_head.weight"}
    assert expected <= set(stored)
    for key in expected:
        np.testing.assert_array_equal(stored[key], state[key].numpy(), err_msg=key)
    if spec == "gpt_tiny.mspec":  # repeat layers unrolled, named as torch's ModuleList names them
        assert {"h.0.attn.q.weight", "h.1.mlp.fc.bias", "h.2.ln_2.weight"} <= set(stored)
        assert not any(k.startswith("h.3.") for k in stored)


@pytest.mark.slow  # the encoder-decoder of "Attention Is All You Need": about 10 seconds
def test_transformer_encoder_decoder_same_as_torch(reference):
    ref = reference("transformer.mspec")
    ref.compare({"source": tokens((2, 9), vocab=100), "target": tokens((2, 6), vocab=100, seed=1)}, atol=1e-4)
