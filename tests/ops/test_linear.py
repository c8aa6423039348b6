"""`linear`: [*, in] -> [*, out]."""


def test_shape_and_params(ops):
    r = ops("linear", "float[B, T, 768]", out_features=3072)
    assert str(r.out) == "float[B, T, 3072]"
    assert r.shapes == {"weight": (3072, 768), "bias": (3072,)}
    assert r.n_params == 768 * 3072 + 3072
    assert r.params[0].init == "kaiming_uniform" and r.params[0].init_args == {"fan_in": 768}


def test_declared_in_features_are_checked(ops):
    assert str(ops("linear", "float[B, 64]", in_features=64, out_features=10).out) == "float[B, 10]"
    err = ops.error("linear", "float[B, 4096]", in_features=2304, out_features=128)
    assert err.message == "`linear` declares 2304 input features but receives 4096"
    assert err.arg == "in_features" and err.help == "drop the input size: `linear(128)`"


def test_symbolic_in_features_and_int_inputs_are_errors(ops):
    assert "known number of input features" in ops.error("linear", "float[B, D]", out_features=4).message
    assert ops.error("linear", "int64[B, 4]", out_features=4).code == "E0302"


def test_tied_weight_and_no_bias(ops):
    r = ops("linear", "float[B, T, 768]", out_features=50257, bias=False, tie="wte")
    assert r.shapes == {"weight": (50257, 768)}
    assert r.params[0].tied_to == "wte.weight"


def test_cost(ops, at):
    r = ops("linear", "float[B, 8]", out_features=4)
    assert at(r.cost.macs, B=2) == 2 * 8 * 4
    assert at(r.cost.flops, B=2) == 2 * 2 * 8 * 4 + 2 * 4
