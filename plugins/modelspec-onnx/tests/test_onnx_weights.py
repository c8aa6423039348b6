"""Seeded weights follow each parameter's declared initialiser, as torch.nn.init draws it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from onnx_helpers import SPECS

import modelspec
from modelspec.ir.graph import Param
from modelspec_onnx import export, parameters
from modelspec_onnx.weights import initial_value


def initializers(model) -> dict[str, np.ndarray]:
    return {t.name: onnx_array(t) for t in model.graph.initializer}


def onnx_array(tensor):
    from onnx import numpy_helper

    return numpy_helper.to_array(tensor)


@pytest.fixture(scope="module")
def gpt():
    return modelspec.load(SPECS / "gpt_tiny.mspec")


def test_same_seed_same_weights_other_seed_other_weights(gpt):
    first, again, other = (initializers(export(gpt, "GPTTiny", seed=s)) for s in (0, 0, 1))
    assert first.keys() == again.keys() == other.keys()
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert not np.array_equal(first["h.0.attn.q.weight"], other["h.0.attn.q.weight"])
    # Each layer of an unrolled repeat draws its own weights.
    assert not np.array_equal(first["h.0.attn.q.weight"], first["h.1.attn.q.weight"])


def test_declared_initialisers(gpt):
    weights = initializers(export(gpt, "GPTTiny", seed=0))
    assert abs(weights["wte.weight"].std() - 0.02) < 0.002  # init=normal(0.02)
    assert abs(weights["wpe.weight"].std() - 0.01) < 0.001
    proj_std = 0.02 / math.sqrt(2 * 3)  # proj_std=residual_std
    assert abs(weights["h.2.mlp.proj.weight"].std() - proj_std) < 0.1 * proj_std
    assert not weights["h.0.attn.q.bias"].any()  # biases of init= layers start at zero
    assert (weights["h.1.ln_1.weight"] == 1).all() and not weights["ln_f.bias"].any()
    assert "lm_head.weight" not in weights  # tied to wte.weight: stored once


def test_torch_default_bounds():
    # linear(128) of 784 inputs: kaiming_uniform(a=sqrt(5)) and a fan-in uniform bias, both within 1/sqrt(784).
    weight = initial_value(Param(name="weight", shape=(128, 784), init="kaiming_uniform"), np.random.default_rng(0))
    bias = initial_value(
        Param(name="bias", shape=(128,), init="uniform_fan_in", init_args={"fan_in": 784}), np.random.default_rng(0)
    )
    bound = 1 / math.sqrt(784)
    for values in (weight, bias):
        assert values.dtype == np.float32 and np.abs(values).max() <= bound
    assert np.abs(weight).max() > 0.95 * bound  # and they fill it (uniform, not normal)
    assert abs(weight.std() - bound / math.sqrt(3)) < 0.01 * bound


@pytest.mark.parametrize(
    ("init", "args", "std"),
    [
        ("kaiming_normal", {"nonlinearity": "relu", "a": 0.0, "mode": "fan_in"}, math.sqrt(2 / 200)),
        ("xavier_uniform", {"gain": 1.0}, math.sqrt(2 / 300)),
        ("trunc_normal", {"std": 0.5, "mean": 0.0, "a": -0.5, "b": 0.5}, None),
    ],
)
def test_named_initialisers(init, args, std):
    values = initial_value(Param(name="weight", shape=(100, 200), init=init, init_args=args), np.random.default_rng(1))
    if std is not None:
        assert abs(values.std() - std) < 0.05 * std
    else:
        assert values.min() >= -0.5 and values.max() <= 0.5


def test_orthogonal_rows():
    values = initial_value(Param(name="weight", shape=(16, 32), init="orthogonal"), np.random.default_rng(2))
    np.testing.assert_allclose(values @ values.T, np.eye(16), atol=1e-5)


def test_parameter_paths_are_the_torch_state_dict_keys(gpt):
    import torch  # noqa: F401  (the reference only)

    found, aliases = parameters(gpt.models["GPTTiny"].graph)
    state = modelspec.build(gpt, "GPTTiny", seed=0).state_dict()
    assert set(found) | {a for names in aliases.values() for a in names} == set(state)
    assert aliases == {"wte.weight": ["lm_head.weight"]}
