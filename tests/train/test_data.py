"""The dataset runtime: every dataset in memory, its DataErrors, splits and
seeded, resumable loading. Texts are generated here or read from Python's own
standard library; no third-party text is committed."""

from __future__ import annotations

import inspect
import json.decoder
from pathlib import Path

import numpy as np
import pytest
import torch

import modelspec
from modelspec.plugins import BUILTIN_PLUGINS, Registry
from modelspec.train.components import BUILTIN_COMPONENTS, Component, DigitsArgs
from modelspec.train.config import ComponentSpec
from modelspec.train.data import (
    DataBundle,
    DataError,
    TensorItems,
    check_vocabulary,
    input_bounds,
    make_data,
    make_loaders,
    on_device,
    stdlib_text,
    tensor_type,
)

REGISTRY = Registry(components={(c.kind, c.name): c for c in BUILTIN_COMPONENTS})
SPECS = Path(__file__).resolve().parents[2] / "specs"

IMAGE = {"image": "float[B, 1, 28, 28]"}
TOKENS = {"tokens": "int64[B, T]"}


def data(name: str, **args) -> ComponentSpec:
    """A dataset call as `validate_train` would give it: every argument, defaults filled in."""
    component = REGISTRY.component("dataset", name)
    return ComponentSpec(kind="dataset", name=name, args=component.parse(args).model_dump(mode="json"))


def load(name: str, inputs, seed: int = 0, **args) -> DataBundle:
    base = args.pop("base", None)
    bounds = args.pop("bounds", None)
    return make_data(data(name, **args), inputs, seed, REGISTRY, base=base, bounds=bounds)


def batches(bundle: DataBundle, spec: ComponentSpec, seed=0, epoch=0, skip=0, val=False):
    train, validation = make_loaders(bundle, spec.parsed(REGISTRY), seed, epoch, skip)
    return list(validation if val else train)


def same(a: list[dict], b: list[dict]) -> bool:
    return len(a) == len(b) and all(
        x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x) for x, y in zip(a, b)
    )


def error(excinfo) -> str:
    return str(excinfo.value)


# ---- digits --------------------------------------------------------------------------


def test_digits_resized_to_the_models_image():
    bundle = load("digits", IMAGE, size=28)
    assert bundle.fields == ("image", "label")
    assert bundle.info["samples"] == 1797 and bundle.info["classes"] == list(range(10))
    item = bundle.train[0]
    assert item["image"].shape == (1, 28, 28) and item["image"].dtype == torch.float32
    assert item["label"].dtype == torch.int64 and item["label"].shape == ()
    images = bundle.train.tensors["image"]
    assert images.min() >= 0 and images.max() <= 1 and images.max() > 0.9


def test_digits_fit_any_input_name_and_flat_inputs():
    bundle = load("digits", {"pixels": "float[B, 784]"}, size=28)
    assert bundle.fields == ("pixels", "label") and bundle.train[0]["pixels"].shape == (784,)
    assert load("digits", {"x": "float[B, 8, 8]"}).train[0]["x"].shape == (8, 8)
    assert load("digits", {"x": "float[B, C, H, W]"}).train[0]["x"].shape == (1, 8, 8)


def test_digits_scales():
    signed = load("digits", IMAGE, size=28, scale="signed").train.tensors["image"]
    assert signed.min() >= -1 and signed.min() < -0.99 and signed.max() <= 1
    bundle = load("digits", IMAGE, size=28, scale="standard")
    train = bundle.train.tensors["image"]
    assert abs(train.mean().item()) < 1e-4 and abs(train.std().item() - 1) < 1e-3
    assert set(bundle.info["normalize"]) == {"mean", "std"}


def test_digits_as_three_channels():
    """`channels=3` repeats the grey image, for models made for RGB (the shipped CNN)."""
    grey = load("digits", {"image": "float[B, 1, 32, 32]"}, size=32).train.tensors["image"]
    rgb = load("digits", {"image": "float[B, 3, 32, 32]"}, size=32, channels=3).train.tensors["image"]
    assert rgb.shape == (len(grey), 3, 32, 32)
    assert all(torch.equal(rgb[:, c], grey[:, 0]) for c in range(3))
    with pytest.raises(DataError) as e:
        load("digits", {"image": "float[B, 3, 32, 32]"}, size=32)
    assert "[1, 32, 32]" in error(e) and "`channels=3` repeats them" in error(e)
    with pytest.raises(ValueError, match="`channels` must be 1 .* or 3"):
        data("digits", channels=2)


def test_digits_that_do_not_fit_the_input():
    with pytest.raises(DataError) as e:
        load("digits", IMAGE)  # size 8
    message = error(e)
    assert "input `image`" in message and "float[B, 1, 28, 28]" in message and "[1, 8, 8]" in message
    assert "size=8" in message


def test_a_dataset_with_one_input_and_a_model_with_two():
    with pytest.raises(DataError, match="takes 2 .*`a`, `b`"):
        load("digits", {"a": "float[B, 64]", "b": "float[B, 64]"})


def test_integer_input_refuses_float_data():
    with pytest.raises(DataError, match=r"input `x` is declared int64\[B, 64\] \(integers\)"):
        load("digits", {"x": "int64[B, 64]"})


# ---- synthetic -----------------------------------------------------------------------


def test_synthetic_shapes_dtypes_and_ranges():
    inputs = {"x": "float[B, 3, 4]", "ids": "int64[B, 5]"}
    bundle = load("synthetic", inputs, samples=50, batch=10, classes=3, vocab=7)
    assert bundle.fields == ("x", "ids", "label")
    assert (bundle.info["train"], bundle.info["val"]) == (40, 10)
    t = bundle.train.tensors
    assert t["x"].shape == (40, 3, 4) and t["x"].dtype == torch.float32
    assert t["ids"].dtype == torch.int64 and 0 <= t["ids"].min() and t["ids"].max() < 7
    assert t["label"].min() >= 0 and t["label"].max() < 3


def test_synthetic_is_seeded():
    a, b = (load("synthetic", {"x": "float[B, 4]"}, seed=3, samples=20, batch=4) for _ in range(2))
    c = load("synthetic", {"x": "float[B, 4]"}, seed=4, samples=20, batch=4)
    assert torch.equal(a.train.tensors["x"], b.train.tensors["x"])
    assert not torch.equal(a.train.tensors["x"], c.train.tensors["x"])


def test_synthetic_symbolic_sizes_need_a_bound():
    with pytest.raises(DataError) as e:
        load("synthetic", TOKENS, samples=8, batch=4)
    assert "input `tokens`" in error(e) and "int64[B, T]" in error(e) and "real dataset" in error(e)
    bundle = load("synthetic", TOKENS, samples=8, batch=4, bounds={"T": 16})
    assert bundle.train[0]["tokens"].shape == (16,)


# ---- npz and npy ---------------------------------------------------------------------


def test_npz(tmp_path):
    x = np.arange(40 * 6, dtype=np.float64).reshape(40, 6)
    y = np.arange(40) % 3
    np.savez(tmp_path / "d.npz", x=x, y=y)
    bundle = load("npz", {"features": "float[B, 6]"}, path=str(tmp_path / "d.npz"), split=0.75)
    assert bundle.fields == ("features", "label") and (bundle.info["train"], bundle.info["val"]) == (30, 10)
    item = bundle.train[0]
    assert item["features"].dtype == torch.float32 and item["label"].dtype == torch.int64
    rows = torch.cat([bundle.train.tensors["features"], bundle.val.tensors["features"]])
    assert sorted(rows[:, 0].tolist()) == [6.0 * i for i in range(40)]  # a partition of the rows


def test_npz_paths_are_relative_to_the_base_and_keys_are_named(tmp_path):
    (tmp_path / "data").mkdir()
    np.savez(tmp_path / "data" / "d.npz", inputs=np.zeros((4, 2, 2), np.float32), targets=np.zeros(4, np.float32))
    bundle = load("npz", {"x": "float[B, 1, 2, 2]"}, path="data/d.npz", x="inputs", y="targets", base=tmp_path, batch=2)
    assert bundle.train[0]["x"].shape == (1, 2, 2) and bundle.train[0]["label"].dtype == torch.float32
    spec_file = tmp_path / "m.mspec"
    spec_file.write_text("")
    assert load("npz", {"x": "float[B, 4]"}, path="data/d.npz", x="inputs", y="targets", base=spec_file, batch=2)


def test_npz_one_array_per_input_of_a_model_with_several(tmp_path):
    np.savez(tmp_path / "d.npz", a=np.ones((6, 2)), b=np.zeros((6, 3), np.int64), y=np.arange(6))
    bundle = load("npz", {"a": "float[B, 2]", "b": "int64[B, 3]"}, path=str(tmp_path / "d.npz"), batch=2)
    assert bundle.fields == ("a", "b", "label") and bundle.train[0]["b"].dtype == torch.int64


def test_npz_errors(tmp_path):
    inputs = {"x": "float[B, 3]"}
    with pytest.raises(DataError, match="no such file `missing.npz`"):
        load("npz", inputs, path="missing.npz", base=tmp_path)
    (tmp_path / "text.npz").write_text("not an archive")
    with pytest.raises(DataError, match=r"text.npz` is not a .npz archive \(a zip of .npy arrays") as e:
        load("npz", inputs, path=str(tmp_path / "text.npz"))
    assert "pickled" not in error(e)  # numpy's own reason, wrong about a text file
    (tmp_path / "empty.npz").write_bytes(b"")
    with pytest.raises(DataError, match=r"is not a .npz archive .*\(the file is empty\)"):
        load("npz", inputs, path=str(tmp_path / "empty.npz"))
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 and then nothing of a zip")
    with pytest.raises(DataError, match="cannot read .*broken.npz.* as a .npz archive"):
        load("npz", inputs, path=str(tmp_path / "broken.npz"))
    np.save(tmp_path / "single.npy", np.zeros((4, 3)))
    with pytest.raises(DataError, match="holds a single array, expected a .npz archive"):
        load("npz", inputs, path=str(tmp_path / "single.npy"))
    np.savez(tmp_path / "keys.npz", inputs=np.zeros((4, 3)), y=np.zeros(4))
    with pytest.raises(DataError, match="no array `x` .*it holds `inputs`, `y`"):
        load("npz", inputs, path=str(tmp_path / "keys.npz"))
    np.savez(tmp_path / "lengths.npz", x=np.zeros((4, 3)), y=np.zeros(5))
    with pytest.raises(DataError, match="different numbers of samples: `x` has 4, `y` has 5"):
        load("npz", inputs, path=str(tmp_path / "lengths.npz"))
    np.savez(tmp_path / "empty.npz", x=np.zeros((0, 3)), y=np.zeros(0))
    with pytest.raises(DataError, match="dataset `npz` is empty"):
        load("npz", inputs, path=str(tmp_path / "empty.npz"))
    np.savez(tmp_path / "wide.npz", x=np.zeros((4, 5)), y=np.zeros(4))
    with pytest.raises(DataError) as e:
        load("npz", inputs, path=str(tmp_path / "wide.npz"))
    assert "input `x`" in error(e) and "float[B, 3]" in error(e) and "[5]" in error(e) and "wide.npz" in error(e)
    np.savez(tmp_path / "strings.npz", x=np.array([["a"] * 3] * 4), y=np.zeros(4))
    with pytest.raises(DataError, match="holds <U1 values, expected numbers"):
        load("npz", inputs, path=str(tmp_path / "strings.npz"))


def test_npz_of_objects_or_of_other_files(tmp_path):
    """A zip is a .npz archive, but its arrays may be pickled objects (never unpickled) or no arrays at all."""
    import zipfile

    inputs = {"x": "float[B, 3]"}
    np.savez(tmp_path / "objects.npz", x=np.array([{"a": 1}, None, 2, 3], dtype=object), y=np.zeros(4))
    with pytest.raises(DataError, match="array `x` of .*objects.npz.* holds Python objects .*never unpickled"):
        load("npz", inputs, path=str(tmp_path / "objects.npz"))
    with zipfile.ZipFile(tmp_path / "other.npz", "w") as archive:
        archive.writestr("x.npy", b"not an array")
    with pytest.raises(DataError, match="`x` of .*other.npz.* is not a .npy array"):
        load("npz", inputs, path=str(tmp_path / "other.npz"))


def test_npy(tmp_path):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((10, 2, 3)))
    np.save(tmp_path / "y.npy", np.arange(10))
    bundle = load("npy", {"x": "float[B, 6]"}, x_path="x.npy", y_path="y.npy", base=tmp_path, batch=2)
    assert bundle.fields == ("x", "label") and bundle.train[0]["x"].shape == (6,)
    unlabelled = load("npy", {"x": "float[B, 2, 3]"}, x_path="x.npy", base=tmp_path, batch=2)
    assert unlabelled.fields == ("x",)
    np.savez(tmp_path / "both.npz", x=np.zeros(3))
    with pytest.raises(DataError, match="is a .npz archive, expected one .npy array"):
        load("npy", {"x": "float[B, 3]"}, x_path="both.npz", base=tmp_path, batch=2)
    with pytest.raises(DataError, match="no such file `nope.npy`"):
        load("npy", {"x": "float[B, 3]"}, x_path="x.npy", y_path="nope.npy", base=tmp_path, batch=2)
    (tmp_path / "text.npy").write_text("1, 2, 3")
    with pytest.raises(DataError, match=r"text.npy\) is not a .npy file") as e:
        load("npy", {"x": "float[B, 3]"}, x_path="text.npy", base=tmp_path, batch=2)
    assert "pickled" not in error(e)


# ---- csv -----------------------------------------------------------------------------


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_csv_numeric_features_and_named_classes(tmp_path):
    rows = "".join(f"r{i},{i},{i * 0.5},{'cat' if i % 2 else 'dog'}\n" for i in range(10))
    path = write(tmp_path / "d.csv", "id,a,b,kind\n" + rows)
    bundle = load("csv", {"x": "float[B, 2]"}, path=path, label="kind", batch=4)
    assert bundle.info["classes"] == ["cat", "dog"]  # `id` is text: not a feature
    t = torch.cat([bundle.train.tensors["x"], bundle.val.tensors["x"]])
    assert sorted(t[:, 0].tolist()) == list(range(10))
    labels = dict(zip(bundle.train.tensors["x"][:, 0].tolist(), bundle.train.tensors["label"].tolist()))
    assert all(label == (0 if int(a) % 2 else 1) for a, label in labels.items())
    integers = load("csv", {"x": "float[B, 1]"}, path=write(tmp_path / "i.csv", "a,label\n1,0\n2,1\n3,2\n"), batch=1)
    assert integers.train.tensors["label"].dtype == torch.int64 and "classes" not in integers.info


def test_csv_errors(tmp_path):
    inputs = {"x": "float[B, 2]"}
    with pytest.raises(DataError) as e:
        load("csv", inputs, path=write(tmp_path / "a.csv", "a,b,y\n1,2,0\n"), batch=1)
    assert "no column `label`" in error(e) and "`a`, `b`, `y`" in error(e)
    with pytest.raises(DataError, match="column `b` of .* has 'x' on line 3, expected a number"):
        load("csv", inputs, path=write(tmp_path / "b.csv", "a,b,label\n1,2,0\n1,x,1\n"), batch=1)
    with pytest.raises(DataError, match="has a header but no rows"):
        load("csv", inputs, path=write(tmp_path / "c.csv", "a,b,label\n"), batch=1)
    with pytest.raises(DataError, match="is empty"):
        load("csv", inputs, path=write(tmp_path / "d.csv", ""), batch=1)
    with pytest.raises(DataError, match="line 3 .* has 2 cells, the header 3"):
        load("csv", inputs, path=write(tmp_path / "e.csv", "a,b,label\n1,2,0\n1,2\n"), batch=1)
    with pytest.raises(DataError, match=r"input `x`.*float\[B, 2\].*\[3\]"):
        load("csv", inputs, path=write(tmp_path / "f.csv", "a,b,c,label\n1,2,3,0\n"), batch=1)
    (tmp_path / "g.csv").write_bytes(b"a,b,label\n\xff,2,0\n")
    with pytest.raises(DataError, match="cannot read .*g.csv.* as UTF-8 CSV"):
        load("csv", inputs, path=str(tmp_path / "g.csv"), batch=1)


# ---- image_folder --------------------------------------------------------------------


def image_tree(root: Path, classes=("cat", "dog"), per_class=3) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    (root / "cat" / "notes.txt").write_text("not an image")
    return root


def test_image_folder(tmp_path):
    root = image_tree(tmp_path / "images")
    bundle = load("image_folder", {"image": "float[B, 3, 8, 8]"}, path="images", size=8, batch=2, base=tmp_path)
    assert bundle.info["classes"] == ["cat", "dog"] and bundle.info["samples"] == 6
    assert bundle.train[0]["image"].shape == (3, 8, 8)
    labels = torch.cat([bundle.train.tensors["label"], bundle.val.tensors["label"]])
    assert sorted(labels.tolist()) == [0, 0, 0, 1, 1, 1]
    grey = load("image_folder", {"x": "float[B, 64]"}, path=str(root), size=8, channels=1, batch=2)
    assert (
        grey.train[0]["x"].shape == (64,) and 0 <= grey.train.tensors["x"].min() <= grey.train.tensors["x"].max() <= 1
    )


def test_image_folder_errors(tmp_path):
    inputs = {"image": "float[B, 3, 8, 8]"}
    with pytest.raises(DataError, match="no such folder `missing`"):
        load("image_folder", inputs, path="missing", size=8, base=tmp_path)
    (tmp_path / "flat").mkdir()
    with pytest.raises(DataError, match="has no subfolders"):
        load("image_folder", inputs, path=str(tmp_path / "flat"), size=8)
    root = image_tree(tmp_path / "images")
    (root / "empty").mkdir()
    with pytest.raises(DataError, match="class folder `empty` .* holds no images"):
        load("image_folder", inputs, path=str(root), size=8)
    (root / "empty" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot read image .*broken.png"):
        load("image_folder", inputs, path=str(root), size=8)
    (root / "empty" / "broken.png").unlink()
    (root / "empty").rmdir()
    with pytest.raises(DataError, match=r"input `image`.*float\[B, 3, 8, 8\].*\[1, 8, 8\]"):
        load("image_folder", inputs, path=str(root), size=8, channels=1)


# ---- text ----------------------------------------------------------------------------

TEXT = inspect.getsource(json.decoder)  # Python's own source: no third-party text


def test_text_char_blocks_and_shifted_targets(tmp_path):
    path = write(tmp_path / "t.txt", TEXT)
    bundle = load("text", TOKENS, path=path, block=16, batch=4, split=1)
    assert bundle.val is None and bundle.fields == ("tokens", "target")
    tokenizer = bundle.tokenizer
    assert tokenizer.kind == "char" and tokenizer.vocab == "".join(sorted(set(TEXT)))
    assert bundle.info["samples"] == (len(TEXT) - 1) // 16
    stream = torch.tensor(tokenizer.encode(TEXT))
    for i in (0, 1, len(bundle.train) - 1):
        item = bundle.train[i]
        assert item["tokens"].dtype == item["target"].dtype == torch.int64
        assert torch.equal(item["tokens"], stream[16 * i : 16 * i + 16])
        assert torch.equal(item["target"], stream[16 * i + 1 : 16 * i + 17])  # the next token of each position
    assert tokenizer.decode(bundle.train[0]["tokens"].tolist()) == TEXT[:16]


def test_text_bytes_and_input_names(tmp_path):
    text = "héllo wörld, " * 20
    path = write(tmp_path / "t.txt", text)
    bundle = load("text", {"ids": "int64[B, T]"}, path=path, tokenizer="byte", block=8, batch=2)
    assert bundle.tokenizer.size == 256 and bundle.fields == ("ids", "tokens", "target")
    item = bundle.train[0]
    assert torch.equal(item["ids"], item["tokens"]) and torch.equal(item["ids"][1:], item["target"][:-1])
    assert bytes(torch.cat([bundle.train[i]["ids"] for i in range(2)]).tolist()) in text.encode() * 2


def test_text_from_the_standard_library():
    assert stdlib_text("json").startswith('r"""JSON') and "class JSONDecoder" in stdlib_text("json")
    assert stdlib_text("textwrap") == inspect.getsource(__import__("textwrap"))
    bundle = load("text", TOKENS, path="stdlib:json", block=64, batch=8)
    assert bundle.info["source"].startswith("stdlib:json (Python 3.")
    with pytest.raises(DataError, match="`stdlib:numpy` names no module of Python's standard library"):
        load("text", TOKENS, path="stdlib:numpy")
    with pytest.raises(DataError, match="`stdlib:sys`: .* has no Python source"):
        load("text", TOKENS, path="stdlib:sys")


def test_text_errors(tmp_path):
    path = write(tmp_path / "t.txt", TEXT)
    with pytest.raises(DataError, match="longer than the model's context.*`T` up to 64"):
        load("text", TOKENS, path=path, block=128, bounds={"T": 64})
    with pytest.raises(DataError, match=r"input `tokens`.*int64\[B, 32\].*\[16\].*set `block=32`"):
        load("text", {"tokens": "int64[B, 32]"}, path=path, block=16)
    with pytest.raises(DataError, match=r"input `x` is declared float\[B, 4\]"):
        load("text", {"x": "float[B, 4]"}, path=path, block=16)
    with pytest.raises(DataError, match="has 10 tokens, too few .* needs at least 17"):
        load("text", TOKENS, path=write(tmp_path / "short.txt", "0123456789"), block=16)
    (tmp_path / "latin1.txt").write_bytes("café ".encode("latin-1") * 50)
    with pytest.raises(DataError, match="latin1.txt.* is not UTF-8 text"):
        load("text", TOKENS, path=str(tmp_path / "latin1.txt"), block=16)
    with pytest.raises(DataError, match="no such file `gone.txt`"):
        load("text", TOKENS, path="gone.txt", base=tmp_path)


def test_vocabulary_larger_than_the_embedding(tmp_path):
    bundle = load("text", TOKENS, path=write(tmp_path / "t.txt", TEXT), block=16)
    check_vocabulary(bundle, bundle.tokenizer.size)
    with pytest.raises(DataError, match=f"has {bundle.tokenizer.size} tokens, more than the 10 of"):
        check_vocabulary(bundle, 10)


def test_gpt_tiny_trains_on_json_sources():
    program = modelspec.load(SPECS / "gpt_tiny.mspec")
    model = program.model("GPTTiny")
    regime = program.trains["stdlib_chars"]
    bounds = input_bounds(model.graph)
    assert bounds == {"T": 64}
    bundle = make_data(regime.data, model.graph.inputs, 0, base=SPECS, bounds=bounds)
    check_vocabulary(bundle, model.hyperparameters["vocab"])
    (batch,) = batches(bundle, regime.data)[:1]
    assert batch["tokens"].shape == batch["target"].shape == (16, 64)


# ---- splits, shuffling, resuming, workers --------------------------------------------


def test_split_sizes_and_seeded_partition():
    inputs = {"x": "float[B, 2]"}
    bundle = load("synthetic", inputs, samples=100, batch=10, split=0.8)
    assert (len(bundle.train), len(bundle.val)) == (80, 20)
    assert bundle.info["train"] == 80 and bundle.info["val"] == 20
    whole = load("synthetic", inputs, samples=100, batch=10, split=1)
    assert whole.val is None and len(whole.train) == 100
    rows = {tuple(r.tolist()) for r in whole.train.tensors["x"]}
    train = {tuple(r.tolist()) for r in bundle.train.tensors["x"]}
    val = {tuple(r.tolist()) for r in bundle.val.tensors["x"]}
    assert train | val == rows and not train & val
    tiny = load("synthetic", inputs, samples=3, batch=1, split=0.99)
    assert (len(tiny.train), len(tiny.val)) == (2, 1)  # both sides keep at least one sample
    first, again = (load("digits", IMAGE, size=28, seed=5) for _ in range(2))
    other = load("digits", IMAGE, size=28, seed=6)
    assert torch.equal(first.train.tensors["image"], again.train.tensors["image"])
    assert not torch.equal(first.train.tensors["label"], other.train.tensors["label"])


def test_batches_are_seeded_per_epoch_and_validation_is_in_order():
    spec = data("digits", batch=64, size=8)
    bundle = make_data(spec, {"x": "float[B, 64]"}, 0, REGISTRY)
    epoch0 = batches(bundle, spec, epoch=0)
    assert len(epoch0) == -(-len(bundle.train) // 64)
    assert same(epoch0, batches(bundle, spec, epoch=0))
    assert not same(epoch0, batches(bundle, spec, epoch=1))
    assert not same(epoch0, batches(bundle, spec, seed=1))
    seen = torch.cat([b["x"] for b in epoch0])
    assert sorted(seen.sum(1).tolist()) == sorted(bundle.train.tensors["x"].sum(1).tolist())  # every item once
    val = batches(bundle, spec, val=True)
    assert torch.equal(torch.cat([b["x"] for b in val]), bundle.val.tensors["x"])
    ordered = data("digits", batch=64, size=8, shuffle=False)
    assert torch.equal(batches(bundle, ordered)[0]["x"], bundle.train.tensors["x"][:64])


@pytest.mark.parametrize("name", ["digits", "text"])
def test_resuming_mid_epoch_gives_the_same_batches(name, tmp_path):
    if name == "digits":
        spec, inputs = data("digits", batch=100, size=8), {"x": "float[B, 64]"}
    else:
        spec, inputs = data("text", path=write(tmp_path / "t.txt", TEXT), block=32, batch=16), TOKENS
    bundle = make_data(spec, inputs, 7, REGISTRY)
    uninterrupted = batches(bundle, spec, seed=7, epoch=2)
    for skip in (0, 1, 5, len(uninterrupted) - 1, len(uninterrupted)):
        assert same(batches(bundle, spec, seed=7, epoch=2, skip=skip), uninterrupted[skip:])
    with pytest.raises(DataError, match="cannot skip"):
        batches(bundle, spec, epoch=2, skip=len(uninterrupted) + 1)


def test_skipped_batches_are_not_loaded():
    spec = data("synthetic", samples=40, batch=10)
    bundle = make_data(spec, {"x": "float[B, 2]"}, 0, REGISTRY)
    loaded = []
    getitems = type(bundle.train).__getitems__  # batches are fetched whole
    type(bundle.train).__getitems__ = lambda self, i: loaded.extend(i) or getitems(self, i)
    try:
        (batch,) = batches(bundle, spec, skip=3)
    finally:
        type(bundle.train).__getitems__ = getitems
    assert len(loaded) == 2 and len(batch["x"]) == 2  # 32 training samples: the last batch only


@pytest.mark.parametrize("name", ["digits", "text"])
def test_batches_fetched_whole_equal_items_collated(name, tmp_path):
    """`__getitems__` (one gather per batch) gives exactly what item-by-item fetching and stacking gives."""
    if name == "digits":
        spec, inputs = data("digits", batch=50, size=8), {"x": "float[B, 64]"}
    else:
        spec, inputs = data("text", path=write(tmp_path / "t.txt", TEXT), block=32, batch=16), TOKENS
    bundle = make_data(spec, inputs, 3, REGISTRY)
    indices = [5, 0, 7, 2]
    whole = bundle.train.__getitems__(indices)
    stacked = torch.utils.data.default_collate([bundle.train[i] for i in indices])
    assert set(whole) == set(stacked)
    for key in whole:
        assert whole[key].dtype == stacked[key].dtype and torch.equal(whole[key], stacked[key]), key


def test_workers_do_not_change_the_batches():
    spec = data("digits", batch=256, size=8, workers=0)
    bundle = make_data(spec, {"x": "float[B, 64]"}, 0, REGISTRY)
    in_process = batches(bundle, spec, epoch=1, skip=1)
    two_workers = batches(bundle, data("digits", batch=256, size=8, workers=2), epoch=1, skip=1)
    assert len(in_process) == 5 and same(in_process, two_workers)


@pytest.mark.parametrize("name", ["digits", "text"])
def test_in_order_batches_are_views_and_equal_the_gathered_ones(name, tmp_path):
    """In order and in this process, a batch is a slice of the data's tensors (no copy); a
    DataLoader's workers gather the same items."""
    if name == "digits":
        args, inputs = {"name": "digits", "batch": 100, "size": 8, "shuffle": False}, {"x": "float[B, 64]"}
    else:
        args = {"name": "text", "path": write(tmp_path / "t.txt", TEXT), "block": 32, "batch": 16}  # (shuffled)
        inputs = TOKENS
    spec = data(**args)
    bundle = make_data(spec, inputs, 0, REGISTRY)
    gathered = data(**args, workers=2)
    for val in (False, True) if name == "digits" else (True,):
        in_process = batches(bundle, spec, skip=0 if val else 1, val=val)
        assert same(in_process, batches(bundle, gathered, skip=0 if val else 1, val=val))
    if name == "digits":
        (first, *_), storage = batches(bundle, spec, val=True), bundle.val.tensors["x"].untyped_storage()
        assert first["x"].untyped_storage().data_ptr() == storage.data_ptr()


def test_fixed_batch_dimension():
    spec = data("synthetic", samples=22, batch=4, split=1)
    bundle = make_data(spec, {"x": "float[4, 3]"}, 0, REGISTRY)
    assert bundle.drop_last and all(len(b["x"]) == 4 for b in batches(bundle, spec))
    with pytest.raises(DataError, match=r"input `x` is declared float\[8, 3\]: its batch dimension is fixed at 8"):
        make_data(spec, {"x": "float[8, 3]"}, 0, REGISTRY)
    with pytest.raises(DataError, match="has no batch dimension"):
        make_data(spec, {"x": "float[]"}, 0, REGISTRY)


# ---- the rest ------------------------------------------------------------------------


def test_a_dataset_without_a_runtime():
    plugin = Component("dataset", "imagenet", DigitsArgs, "a plugin's dataset")
    registry = Registry(components={**REGISTRY.components, ("dataset", "imagenet"): plugin})
    spec = ComponentSpec(kind="dataset", name="imagenet", args={})
    with pytest.raises(DataError, match="dataset `imagenet` has no runtime"):
        make_data(spec, IMAGE, 0, registry)


def test_builtin_datasets_are_found_only_through_the_registry():
    spec = data("digits", batch=8, size=8)
    with pytest.raises(DataError, match="no dataset `digits` is registered"):
        make_data(spec, IMAGE, 0, Registry())
    manager = modelspec.PluginManager(entry_points=False)
    for name in BUILTIN_PLUGINS:
        manager.unregister(name)
    with pytest.raises(DataError, match="no dataset `digits` is registered"):
        make_data(spec, IMAGE, 0, manager.registry)


def _elsewhere(args, inputs, seed, *, base, bounds):
    (name,) = inputs
    return DataBundle(TensorItems({name: torch.ones(3, 64), "label": torch.zeros(3)}), None, (name, "label"))


def test_make_data_calls_the_build_the_registry_names():
    # `digits` registered with another build: that build is what loads, there is no private table
    other = Component("dataset", "digits", DigitsArgs, fields=("label",), build=f"{__name__}:_elsewhere")
    registry = Registry(components={**REGISTRY.components, ("dataset", "digits"): other})
    bundle = make_data(data("digits", batch=3), {"x": "float[B, 64]"}, 0, registry)
    assert len(bundle.train) == 3 and bundle.val is None and bundle.info == {"dataset": "digits"}
    assert torch.equal(bundle.train.tensors["x"], torch.ones(3, 64))


def test_every_builtin_dataset_names_its_build_in_the_data_module():
    for component in BUILTIN_COMPONENTS:
        if component.kind == "dataset":
            assert component.build == f"modelspec.train.data:{component.name}_dataset"


def test_types_are_read_from_text():
    t = tensor_type("float[B, 1, (H - 1)//2 + 1, 28]")
    assert str(t) == "float[B, 1, (H - 1)//2 + 1, 28]" and t.rank == 4
    assert tensor_type(t) is t


# ---- data on the device -------------------------------------------------------------------


def test_data_on_the_device_gives_the_same_batches_and_moves_a_shared_stream_once(tmp_path, monkeypatch):
    """`on_device` (what a CUDA run does with data that fits): every tensor moved once, the text's
    training and validation blocks still sharing one stream, and the loaders (indices moved once
    per epoch) giving the batches of the data left on the CPU. Here the device is the CPU; the
    moves are counted through Tensor.to."""
    moves = []
    to = torch.Tensor.to

    def counted(tensor, *args, **kwargs):
        moves.append(tensor.shape)
        return to(tensor, *args, **kwargs).clone()  # a new tensor, as a move to another device gives

    path = write(tmp_path / "t.txt", TEXT)
    cases = [
        (load("digits", IMAGE, batch=50, size=28), data("digits", batch=50, size=28)),
        (load("text", TOKENS, path=path, block=16, batch=8), data("text", path=path, block=16, batch=8)),
    ]
    for bundle, spec in cases:
        moves.clear()
        with monkeypatch.context() as patch:
            patch.setattr(torch.Tensor, "to", counted)
            placed = on_device(bundle, torch.device("cpu"), budget=1 << 30)
        assert placed is not None and placed.device == torch.device("cpu") and bundle.device is None
        held = {id(t) for d in (placed.train, placed.val) for t in d.held()}
        assert len(moves) == len(held) == len({id(t) for d in (bundle.train, bundle.val) for t in d.held()})
        assert held.isdisjoint({id(t) for d in (bundle.train, bundle.val) for t in d.held()})
        for epoch in (0, 1):
            assert same(batches(placed, spec, epoch=epoch), batches(bundle, spec, epoch=epoch))
        assert same(batches(placed, spec, val=True), batches(bundle, spec, val=True))
        assert same(batches(placed, spec, epoch=1, skip=3), batches(bundle, spec, epoch=1, skip=3))
    text = cases[1][0]
    placed = on_device(text, torch.device("cpu"), budget=1 << 30)
    assert placed.train.tokens is placed.val.tokens  # the shared stream, moved once


def test_data_stays_where_it_is_when_it_does_not_fit_or_is_not_held_in_tensors():
    bundle = load("digits", IMAGE, batch=50, size=28)
    size = sum(t.numel() * t.element_size() for d in (bundle.train, bundle.val) for t in d.held())
    assert on_device(bundle, torch.device("cpu"), budget=size - 1) is None
    assert on_device(bundle, torch.device("cpu"), budget=size) is not None

    class Items(torch.utils.data.Dataset):  # a plugin's dataset that reads items one by one
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return {"image": torch.zeros(1, 28, 28), "label": torch.tensor(0)}

    other = DataBundle(train=Items(), val=None, fields=("label",))
    assert on_device(other, torch.device("cpu"), budget=1 << 30) is None


def test_a_dataset_subclass_keeps_its_class_on_the_device():
    """A plugin's TensorItems subclass that changes how items are fetched keeps doing so."""

    class Doubled(TensorItems):
        def __getitems__(self, indices):
            batch = super().__getitems__(indices)
            return {**batch, "image": batch["image"] * 2}

    tensors = {"image": torch.arange(12.0).reshape(6, 2), "label": torch.arange(6)}
    bundle = DataBundle(train=Doubled(tensors), val=None, fields=("label",))
    placed = on_device(bundle, torch.device("cpu"), budget=1 << 20)
    assert type(placed.train) is Doubled
    assert torch.equal(placed.train.__getitems__(torch.tensor([1]))["image"], torch.tensor([[4.0, 6.0]]))
