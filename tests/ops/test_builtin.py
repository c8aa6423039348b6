"""The built-in op library as a whole: registration and the OpSpec contract."""

import json
import pathlib

import pytest

from modelspec.ir.dims import Dim
from modelspec.ops import builtin
from modelspec.ops.base import ShapeError
from modelspec.plugins import registry

REQUIRED = """
linear embedding positions positional_encoding rotary layernorm rmsnorm batchnorm1d batchnorm2d groupnorm
dropout relu gelu silu tanh sigmoid leaky_relu softmax log_softmax identity conv1d conv2d conv_transpose2d
maxpool avgpool maxpool1d avgpool1d adaptive_avgpool flatten reshape view transpose permute concat select mean
split_heads merge_heads add sub mul div matmul attention multihead_attention
""".split()

ALL = [op for module in builtin.OP_MODULES for op in module.OPS]


def test_every_op_is_registered_once():
    reg = registry()
    assert not reg.problems
    names = [op.name for op in ALL]
    assert len(names) == len(set(names))
    assert set(REQUIRED) <= set(names)
    for name in names:
        assert reg.op(name) is not None and reg.op_owner[name] == "modelspec.ops.builtin"


@pytest.mark.parametrize("op", ALL, ids=lambda op: op.name)
def test_op_contract(op):
    assert op.summary and op.shape_rule and op.category != "other"
    fields = set(op.Args.model_fields)
    named = [n.lstrip("*") for n in op.positional] + list(op.arrow or ()) + list(op.identifier_args)
    assert set(named) <= fields, f"{op.name}: {set(named) - fields} are not Args fields"
    assert all(not n.startswith("*") for n in op.positional[:-1]), "only the last positional may be variadic"
    assert op.min_inputs >= 0 and (op.max_inputs is None or op.max_inputs >= op.min_inputs)
    assert "name" not in fields  # `name=` is universal
    assert op.Args.model_config["strict"] and op.Args.model_config["extra"] == "forbid"
    module_doc = __import__(type(op).__module__, fromlist=["_"]).__doc__
    assert f"`{op.name}`" in module_doc or f"{op.name}(" in module_doc or f"|> {op.name}" in module_doc


def test_symbolic_attrs_are_json():
    op = registry().op("reshape")
    args = op.Args.model_validate({"shape": (Dim.sym("B"), Dim.sym("T"), 12, -1)})
    assert json.loads(json.dumps(op.attrs(args))) == {"shape": ["B", "T", "12", "-1"]}


def test_ops_do_not_import_torch():
    for path in pathlib.Path(builtin.__file__).parent.glob("*.py"):
        text = path.read_text()
        assert "import torch" not in text and "from torch" not in text, path.name


# The fewest arguments each op needs, to run every op on odd inputs below.
MINIMAL_ARGS = {
    "linear": {"out_features": 4},
    "embedding": {"num": 10, "dim": 4},
    "positions": {"length": 4},
    "groupnorm": {"groups": 2},
    "conv1d": {"out_channels": 4, "kernel": 3},
    "conv2d": {"out_channels": 4, "kernel": 3},
    "conv_transpose2d": {"out_channels": 4, "kernel": 3},
    "maxpool": {"kernel": 2},
    "avgpool": {"kernel": 2},
    "maxpool1d": {"kernel": 2},
    "avgpool1d": {"kernel": 2},
    "adaptive_avgpool": {"output_size": 2},
    "reshape": {"shape": (-1,)},
    "view": {"shape": (2, -1)},
    "transpose": {"dim0": 0, "dim1": -1},
    "permute": {"dims": (1, 0)},
    "concat": {"dim": 0},
    "select": {"dim": 0, "index": 1},
    "split_heads": {"heads": 2},
    "add": {"scalar": 1.0},
    "sub": {"scalar": 1.0},
    "mul": {"scalar": 1.0},
    "div": {"scalar": 1.0},
    "multihead_attention": {"heads": 2},
}

ODD_INPUTS = [
    "float[]",
    "float[4]",
    "int64[B, T]",
    "bool[2, 3]",
    "float[B, 6]",
    "float[B, C, L]",
    "float[2, 4, 1, 1]",
    "float[B, 4, H, W]",
    "float16[B, 2, T, 6]",
    "float[1, 2, 3, 4, 5]",
]


@pytest.mark.parametrize("op", ALL, ids=lambda op: op.name)
def test_odd_inputs_give_shape_errors_only(ops, op):
    """Whatever the input, a shape rule returns a type or raises ShapeError,
    and params/cost then work on what it accepted."""
    args = op.Args.model_validate(MINIMAL_ARGS.get(op.name, {}))
    n = max(op.min_inputs, 1) if op.max_inputs != 0 else 0
    for text in ODD_INPUTS:
        types = [ops.tensor(text)] * n
        try:
            out = op.infer(types, args)
        except ShapeError:
            continue
        op.params(types, args, out)
        op.cost(types, args, out)
