"""`layernorm`, `rmsnorm`, `batchnorm1d`, `batchnorm2d`, `groupnorm`."""


def test_layernorm(ops, at):
    r = ops("layernorm", "float[B, T, 768]")
    assert str(r.out) == "float[B, T, 768]"
    assert r.shapes == {"weight": (768,), "bias": (768,)}
    assert [p.init for p in r.params] == ["ones", "zeros"]
    assert at(r.cost.flops, B=1, T=1) == 7 * 768
    assert ops("layernorm", "float[B, 8]", bias=False).shapes == {"weight": (8,)}
    assert ops("layernorm", "float[B, D]", affine=False).params == []


def test_layernorm_checks(ops):
    assert ops("layernorm", "float[B, 768]", normalized_shape=768, eps=1e-12).n_params == 1536
    err = ops.error("layernorm", "float[B, 512]", normalized_shape=768)
    assert err.arg == "normalized_shape"
    assert err.message == "`layernorm` declares 768 features but receives 512"
    assert ops.error("layernorm", "float[B, D]").message == "`layernorm` needs a known size here, got `D`"
    assert ops.error("layernorm", "int64[B, 8]").code == "E0302"


def test_rmsnorm(ops):
    r = ops("rmsnorm", "float[B, T, 4096]", eps=1e-6)
    assert r.shapes == {"weight": (4096,)}
    assert ops.op("rmsnorm").Args().eps == 1e-6


def test_batchnorm2d(ops):
    r = ops("batchnorm2d", "float[B, 64, H, W]")
    assert str(r.out) == "float[B, 64, H, W]"
    assert r.n_params == 128
    buffers = r.buffers
    assert {n: b.shape for n, b in buffers.items()} == {
        "running_mean": (64,),
        "running_var": (64,),
        "num_batches_tracked": (),
    }
    assert all(not b.trainable for b in buffers.values())
    assert buffers["num_batches_tracked"].dtype == "int64"
    assert buffers["running_var"].init == "ones"
    assert ops("batchnorm2d", "float[B, 64, H, W]", num_features=64).n_params == 128
    assert ops("batchnorm2d", "float[B, 8, H, W]", track_running_stats=False).buffers == {}


def test_batchnorm_errors(ops):
    err = ops.error("batchnorm2d", "float[B, 32, H, W]", num_features=64)
    assert err.arg == "num_features" and err.message == "`batchnorm2d` declares 64 channels but receives 32"
    err = ops.error("batchnorm2d", "float[B, 32]")
    assert err.code == "E0303" and err.message == "`batchnorm2d` expects a 4-d [B, C, H, W] input, got float[B, 32]"
    assert "known size" in ops.error("batchnorm2d", "float[B, C, H, W]").message


def test_batchnorm1d(ops):
    assert ops("batchnorm1d", "float[B, 16]").n_params == 32
    assert str(ops("batchnorm1d", "float[B, 16, L]").out) == "float[B, 16, L]"
    assert ops.error("batchnorm1d", "float[B, 16, H, W]").code == "E0303"


def test_groupnorm(ops, at):
    r = ops("groupnorm", "float[B, 64, H, W]", groups=32)
    assert r.shapes == {"weight": (64,), "bias": (64,)}
    assert at(r.cost.flops, B=1, H=2, W=2) == 7 * 64 * 4
    err = ops.error("groupnorm", "float[B, 30, H, W]", groups=8)
    assert err.arg == "groups"
    assert err.message == "`groupnorm` cannot split 30 channels into 8 groups"
    assert err.help == "use a divisor of 30, e.g. `groupnorm(10)`"
