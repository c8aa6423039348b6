"""`embedding`, `positions`, `positional_encoding`, `rotary`."""

import pytest
from pydantic import ValidationError


def test_embedding_gpt2_token_table(ops):
    r = ops("embedding", "int64[B, T]", num=50257, dim=768)
    assert str(r.out) == "float[B, T, 768]"
    assert r.shapes == {"weight": (50257, 768)}
    assert r.n_params == 38_597_376
    assert r.params[0].init == "normal" and r.params[0].init_args == {"mean": 0.0, "std": 1.0}
    assert r.cost.flops == 0


def test_embedding_of_positions(ops):
    pos = ops("positions", length=8).out
    assert str(pos) == "int64[8]"
    r = ops("embedding", pos, num=1024, dim=768)
    assert str(r.out) == "float[8, 768]"
    assert r.n_params == 786_432


def test_embedding_needs_integer_indices(ops):
    err = ops.error("embedding", "float[B, T]", num=10, dim=4)
    assert err.code == "E0302" and err.inputs == (0,)
    assert err.message == "`embedding` needs an integer input, got `float`"


def test_embedding_padding_idx(ops):
    r = ops("embedding", "int64[B]", num=10, dim=4, padding_idx=-1)
    assert r.params[0].init_args["padding_idx"] == 9
    err = ops.error("embedding", "int64[B]", num=10, dim=4, padding_idx=10)
    assert err.arg == "padding_idx"
    assert err.message == "`embedding` padding_idx 10 is out of range for 10 rows"


def test_embedding_args_are_validated(ops):
    with pytest.raises(ValidationError):
        ops.op("embedding").Args.model_validate({"num": 0, "dim": 4})


def test_positions_symbolic_length(ops):
    from modelspec.ir.dims import Dim

    r = ops("positions", length=Dim.sym("T"))
    assert str(r.out) == "int64[T]"
    assert r.params == []
    assert ops.op("positions").min_inputs == 0 and ops.op("positions").max_inputs == 0
    assert ops.error("positions", length=0).arg == "length"


def test_sinusoidal_encoding(ops):
    r = ops("positional_encoding", "float[B, T, 512]")
    assert str(r.out) == "float[B, T, 512]"
    assert r.params == []
    assert ops("positional_encoding", "float[B, 100, 512]", max_len=100).params == []
    err = ops.error("positional_encoding", "float[B, 101, 512]", max_len=100)
    assert err.arg == "max_len"
    assert err.message == "`positional_encoding` covers 100 positions but the sequence has 101"
    assert "even" in ops.error("positional_encoding", "float[B, T, 7]").message


def test_learned_encoding(ops):
    r = ops("positional_encoding", "float[B, T, 768]", kind="learned", max_len=1024)
    assert r.shapes == {"weight": (1024, 768)}
    assert ops.error("positional_encoding", "float[B, T, 768]", kind="learned").help.startswith("give the longest")
    assert "known size" in ops.error("positional_encoding", "float[B, T, D]", kind="learned", max_len=8).message


def test_rotary(ops, at):
    r = ops("rotary", "float[B, 12, T, 64]")
    assert str(r.out) == "float[B, 12, T, 64]"
    assert r.params == []
    assert at(r.cost.flops, B=1, T=2) == 3 * 12 * 2 * 64
    err = ops.error("rotary", "float[B, 12, T, 63]")
    assert err.inputs == (0,) and "must be even" in err.message
    assert str(ops("rotary", "float[B, h, T, dk]").out) == "float[B, h, T, dk]"
