"""`init=`: which ops take it, and the initialisers' documented calls are the ones the elaborator reads."""

import typing

import pytest

import modelspec
from modelspec.ops.init import INITIALISERS, takes_init
from modelspec.ops.reference import initialiser_signature
from modelspec.plugins import registry


def test_the_ops_with_parameters_take_init():
    builtin = {n for n, owner in registry().op_owner.items() if registry().is_builtin(owner)}
    taking = {n for n in builtin if takes_init(registry().op(n))}
    assert {"linear", "embedding", "conv2d", "layernorm", "batchnorm2d", "multihead_attention"} <= taking
    assert not {"relu", "dropout", "attention", "reshape", "add", "positions"} & taking


def sample(field):
    """A value the field accepts, as spec text."""
    args = typing.get_args(field.annotation)
    return f'"{args[0]}"' if typing.get_origin(field.annotation) is typing.Literal else "0.5"


@pytest.mark.parametrize("name", list(INITIALISERS))
def test_an_initialiser_takes_its_arguments_in_the_documented_order(name):
    """docs/language.md shows `initialiser_signature`: positional arguments given in that order reach
    the weight's initialiser under those names."""
    model, positional = INITIALISERS[name]
    values = [sample(model.model_fields[a]) for a in positional]
    text = f"model M() {{ input x: float[B, 4]  output y = x |> linear(3, init={name}({', '.join(values)})) }}"
    (node,) = modelspec.load(text).models["M"].graph.nodes
    weight, bias = node.params
    expected = {a: v.strip('"') if v.startswith('"') else float(v) for a, v in zip(positional, values)}
    assert weight.init == name and {k: weight.init_args[k] for k in positional} == expected
    assert bias.init == "zeros"
    inner = initialiser_signature(name).removeprefix(f"{name}(").removesuffix(")")
    assert [part.split("=")[0] for part in inner.split(", ") if part] == list(positional)


def test_initialiser_signature():
    assert initialiser_signature("normal") == "normal(std, mean=0.0)"
    assert initialiser_signature("zeros") == "zeros()"
    assert initialiser_signature("kaiming_normal") == 'kaiming_normal(a=0.0, mode="fan_in", nonlinearity="leaky_relu")'
