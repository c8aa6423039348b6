"""`attention`, `multihead_attention`."""

Q, K, V = "float[B, h, T, 64]", "float[B, h, S, 64]", "float[B, h, S, 32]"


def test_attention_shape(ops):
    op = ops.op("attention")
    assert (op.min_inputs, op.max_inputs) == (3, 4)
    r = ops("attention", Q, K, V)
    assert str(r.out) == "float[B, h, T, 32]"
    assert r.params == []
    assert str(ops("attention", "float[B, T, 8]", "float[B, T, 8]", "float[B, T, 8]", causal=True).out) == (
        "float[B, T, 8]"
    )


def test_attention_masks(ops):
    assert str(ops("attention", Q, K, V, "bool[T, S]").out) == "float[B, h, T, 32]"
    assert str(ops("attention", Q, K, V, "float[B, 1, 1, S]").out) == "float[B, h, T, 32]"
    err = ops.error("attention", Q, K, V, "bool[T, 7]")
    assert err.inputs == (3,) and err.message == "`attention` mask [T, 7] does not broadcast to the scores [B, h, T, S]"
    assert ops.error("attention", Q, K, V, "int64[T, S]").code == "E0302"
    assert ops.error("attention", Q, K, V, "bool[1, B, h, T, S]").code == "E0303"


def test_attention_errors(ops):
    err = ops.error("attention", Q, "float[B, h, S, 32]", V)
    assert err.inputs == (0, 1) and err.message == "`attention` query and key widths differ: 64 and 32"
    err = ops.error("attention", Q, K, "float[B, h, T, 32]")
    assert err.inputs == (1, 2) and err.message == "`attention` has S keys but T values"
    assert ops.error("attention", Q, K, "float16[B, h, S, 32]").code == "E0302"
    assert ops.error("attention", "float[2, h, T, 8]", "float[3, h, S, 8]", "float[3, h, S, 8]").inputs == (0, 1)


def test_attention_cost(ops):
    r = ops("attention", "float[1, 2, 4, 8]", "float[1, 2, 6, 8]", "float[1, 2, 6, 16]")
    scores = 2 * 4 * 6
    assert r.cost.macs == scores * 8 + scores * 16
    assert r.cost.flops == 2 * (scores * 8 + scores * 16) + 5 * scores
    assert r.cost.note == ""
    causal = ops("attention", "float[1, 2, 4, 8]", "float[1, 2, 4, 8]", "float[1, 2, 4, 8]", causal=True)
    assert causal.cost.note == "causal: half of the T×T work is masked"
    assert causal.cost.flops == 2 * 2 * (2 * 4 * 4 * 8) + 5 * 2 * 4 * 4  # counted in full


def test_mha_self_attention_params(ops):
    op = ops.op("multihead_attention")
    assert (op.min_inputs, op.max_inputs, op.positional) == (1, 3, ("heads",))
    r = ops("multihead_attention", "float[B, T, 512]", heads=8, causal=True)
    assert str(r.out) == "float[B, T, 512]"
    assert r.n_params == 4 * (512 * 512 + 512)
    assert r.shapes == {
        f"{p}.{n}": (512, 512) if n == "weight" else (512,)
        for p in ("q_proj", "k_proj", "v_proj", "out_proj")
        for n in ("weight", "bias")
    }
    assert ops("multihead_attention", "float[B, T, 512]", heads=8, bias=False).n_params == 4 * 512 * 512


def test_mha_cross_attention_and_masks(ops):
    r = ops("multihead_attention", "float[B, T, 512]", "float[B, S, 256]", heads=8)
    assert str(r.out) == "float[B, T, 512]"
    assert r.shapes["k_proj.weight"] == (512, 256) and r.shapes["v_proj.weight"] == (512, 256)
    assert r.shapes["q_proj.weight"] == (512, 512) and r.shapes["k_proj.bias"] == (512,)
    masked = ops("multihead_attention", "float[B, T, 64]", "bool[B, 1, 1, T]", heads=4)
    assert masked.shapes["k_proj.weight"] == (64, 64)  # a bool second input is a mask, not memory
    both = ops("multihead_attention", "float[B, T, 64]", "float[B, S, 32]", "bool[T, S]", heads=4)
    assert both.shapes["v_proj.weight"] == (64, 32)
    err = ops.error("multihead_attention", "float[B, T, 64]", "float[B, S, 32]", "bool[T, T]", heads=4)
    assert err.inputs == (2,)


def test_mha_errors(ops):
    err = ops.error("multihead_attention", "float[B, T, 100]", heads=8)
    assert err.arg == "heads" and err.message == "`multihead_attention` cannot split 100 features into 8 heads"
    assert ops.error("multihead_attention", "float[B, T, D]", heads=8).inputs == (0,)
    assert ops.error("multihead_attention", "float[T, 64]", heads=8).code == "E0303"
    err = ops.error("multihead_attention", "float[B, T, 64]", "float[N, S, 64]", heads=8)
    assert err.inputs == (0, 1) and err.message == "`multihead_attention` batch sizes differ: B queries and N memories"


def test_mha_cost(ops):
    r = ops("multihead_attention", "float[1, 4, 8]", heads=2)
    projections = 4 * 4 * 8 * 8
    attention = 2 * 4 * 4 * 8
    assert r.cost.macs == projections + attention
    assert r.cost.flops == 2 * (projections + attention) + 5 * 2 * 4 * 4 + 4 * 4 * 8
    sym = ops("multihead_attention", "float[B, T, 8]", heads=2, causal=True)
    assert sym.cost.flops.symbols() == {"B", "T"}
    assert sym.cost.flops.substitute({"B": 1, "T": 4}) == r.cost.flops
    assert sym.cost.note == "causal: half of the T×T work is masked"
