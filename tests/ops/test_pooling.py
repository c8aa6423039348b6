"""`maxpool`, `avgpool`, `maxpool1d`, `avgpool1d`, `adaptive_avgpool`."""


def test_maxpool_resnet_stem(ops, at):
    r = ops("maxpool", "float[B, 64, H, W]", kernel=3, stride=2, padding=1)
    assert at(r.out.shape[2], H=112) == 56 and at(r.out.shape[3], W=112) == 56
    assert [str(d) for d in r.out.shape[:2]] == ["B", "64"]
    assert r.params == []


def test_stride_defaults_to_kernel(ops, at):
    r = ops("maxpool", "float[B, 64, 8, 9]", kernel=2)
    assert str(r.out) == "float[B, 64, 4, 4]"
    assert at(ops("avgpool", "float[B, 3, H, W]", kernel=2).out.shape[2], H=9) == 4
    assert ops.op("maxpool").positional == ("kernel", "stride", "padding")


def test_ceil_mode(ops, at):
    # googlenet: MaxPool2d(3, stride=2, ceil_mode=True) takes 112 to 56, 56 to 28, 28 to 14
    for size, want in ((112, 56), (56, 28), (28, 14), (7, 3)):
        r = ops("maxpool", f"float[1, 8, {size}, {size}]", kernel=3, stride=2, ceil_mode=True)
        assert r.out.shape[2] == want
    # the last window would start in the padding, so PyTorch drops it: 5 -> 3, not 4
    assert ops("maxpool", "float[1, 1, 5, 5]", kernel=2, stride=2, padding=1, ceil_mode=True).out.shape[2] == 3
    # symbolic sizes work where no window can start in the padding
    assert at(ops("maxpool", "float[1, 1, H, W]", kernel=3, stride=2, ceil_mode=True).out.shape[2], H=7) == 3
    err = ops.error("maxpool", "float[1, 1, H, W]", kernel=2, stride=2, padding=1, ceil_mode=True)
    assert err.arg == "ceil_mode"


def test_pool_errors(ops):
    err = ops.error("maxpool", "float[B, 8, H, W]", kernel=3, padding=2)
    assert err.arg == "padding" and err.message == "`maxpool` padding 2 is more than half the kernel (3)"
    err = ops.error("avgpool", "float[B, 8, 2, 2]", kernel=3)
    assert err.arg == "kernel" and err.message == "`avgpool` kernel spans 3 but the padded input height is 2"
    assert ops.error("maxpool", "float[B, 8, 8]", kernel=2).code == "E0303"


def test_pool1d(ops, at):
    assert str(ops("maxpool1d", "float[B, 8, 10]", kernel=2).out) == "float[B, 8, 5]"
    r = ops("avgpool1d", "float[B, 8, L]", kernel=3, stride=1, padding=1)
    assert str(r.out) == "float[B, 8, L]"
    assert ops.error("avgpool1d", "float[B, 8, 4, 4]", kernel=2).code == "E0303"


def test_adaptive_avgpool(ops):
    assert str(ops("adaptive_avgpool", "float[B, 512, H, W]", output_size=1).out) == "float[B, 512, 1, 1]"
    r = ops("adaptive_avgpool", "float[B, 256, 13, 13]", output_size=(6, 6))
    assert str(r.out) == "float[B, 256, 6, 6]"
    assert r.cost.flops.substitute({"B": 1}) == 256 * 13 * 13 + 256 * 36
    assert ops.error("adaptive_avgpool", "float[B, 8]", output_size=1).code == "E0303"


def test_pool_cost(ops):
    r = ops("maxpool", "float[1, 4, 8, 8]", kernel=3, stride=2, padding=1)
    assert r.cost.flops == 4 * 4 * 4 * 9
