"""The dataset components at run time: data in memory, split and batched.

    bundle = make_data(spec.data, model.graph.inputs, seed, base=spec_folder, bounds=input_bounds(model.graph))
    train, val = make_loaders(bundle, spec.data.parsed(), seed, epoch=3, skip_batches=120)

`make_data` looks the dataset up in the plugin registry and calls its
component's `build` (the contract is in `modelspec.train.builders`), so a
plugin's dataset loads exactly like the built-in ones, whose builds are here
(`digits_dataset`, ... `text_dataset`): they read the data into tensors, check
them against the model's inputs, and split them into a training and a
validation set (a seeded permutation; `split` is the training share).
Every item is a dict of tensors without the batch dimension: the model's
inputs under their names, plus the dataset's fields (`label`; for text
`tokens` and `target`). A dataset with one input feeds a single-input model
whatever that input is called.

Every mistake (a missing file, a wrong format, a label column that does not
exist, data that does not fit the model's input, an empty dataset) is a
`DataError` raised here, before any training step; its message names the
thing (path, column, input, dataset).

`make_loaders` batches the two sets. Shuffling uses a torch.Generator
seeded with `seed + epoch`, so an epoch's batches depend only on (seed,
epoch): resuming at `(epoch, skip_batches)` yields exactly the batches an
uninterrupted run would have seen from there, and skipped batches are never
loaded. The number of worker processes does not change the batches.

Relative paths are resolved against `base` (the spec file's folder). The
text dataset also reads `stdlib:NAME`: the source files of the standard
library module or package NAME of the running Python, so a language model
can train on real text that nobody has to download or ship.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import importlib.util
import math
import random
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from modelspec.ir.dims import Dim
from modelspec.ir.graph import read_type as tensor_type  # a TensorType from its text
from modelspec.ir.types import TensorType, is_float, is_int
from modelspec.train.config import ComponentSpec
from modelspec_torch.generate import Tokenizer


class DataError(Exception):
    """A dataset that cannot feed the model; raised before training starts."""


@dataclass
class DataBundle:
    train: Dataset  # each item: dict[str, Tensor] (no batch dim)
    val: Dataset | None  # None when split == 1
    fields: tuple[str, ...]  # keys every item holds
    tokenizer: Tokenizer | None = None  # text datasets
    # "dataset", "source", "samples", "train", "val", "shapes" ({key: per-item shape});
    # "classes" (names, when known), "normalize" ({"mean", "std"} for scale=standard)
    info: dict = field(default_factory=dict)
    drop_last: bool = False  # the model's batch dimension is a constant: every batch must be full
    device: torch.device | None = None  # where the datasets' tensors are (None: the CPU; see on_device)


# ---- datasets in memory -------------------------------------------------------------


class TensorItems(Dataset):
    """Items `{key: tensors[key][i]}` of equally long tensors."""

    takes_slices = True  # `__getitems__` takes a slice of consecutive items too (views: no copy)

    def __init__(self, tensors: Mapping[str, torch.Tensor]):
        lengths = {len(t) for t in tensors.values()}
        if len(lengths) != 1:
            raise ValueError(f"tensors of different lengths: { {k: len(t) for k, t in tensors.items()} }")
        self.tensors = dict(tensors)
        self.length = lengths.pop()

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: t[index] for k, t in self.tensors.items()}

    def __getitems__(self, indices: list[int] | torch.Tensor | slice) -> dict[str, torch.Tensor]:
        # A whole batch in one gather per tensor: the DataLoader's item-by-item
        # fetch and collate cost as much as a small model's training step
        # (and index_select copies rows about 3x faster than t[index]).
        if isinstance(indices, slice):
            return {k: t[indices] for k, t in self.tensors.items()}
        index = indices if isinstance(indices, torch.Tensor) else torch.as_tensor(indices)
        return {k: t.index_select(0, index) for k, t in self.tensors.items()}

    def subset(self, indices: torch.Tensor) -> TensorItems:
        return TensorItems({k: t[indices] for k, t in self.tensors.items()})

    def values(self, name: str) -> torch.Tensor | None:
        """Every value the items' `name` takes (see `field_values`)."""
        return self.tensors.get(name)

    def held(self) -> list[torch.Tensor]:
        """The tensors this dataset reads its items from (see `on_device`)."""
        return list(self.tensors.values())

    def moved(self, move: Callable[[torch.Tensor], torch.Tensor]) -> TensorItems:
        """A copy (of the same class: a subclass keeps its behaviour) reading moved tensors."""
        copied = copy.copy(self)
        copied.tensors = {k: move(t) for k, t in self.tensors.items()}
        return copied


class TextBlocks(Dataset):
    """Blocks of a token stream: item i is `tokens[s : s + block]` under each of
    `names`, and `target` = `tokens[s + 1 : s + block + 1]`, with s = starts[i]."""

    takes_slices = True

    def __init__(self, tokens: torch.Tensor, starts: torch.Tensor, block: int, names: tuple[str, ...]):
        self.tokens, self.starts, self.block, self.names = tokens, starts, block, names

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        s = int(self.starts[index])
        x = self.tokens[s : s + self.block].long()
        item = dict.fromkeys(self.names, x)
        item["target"] = self.tokens[s + 1 : s + self.block + 1].long()
        return item

    def __getitems__(self, indices: list[int] | torch.Tensor | slice) -> dict[str, torch.Tensor]:
        # A batch of blocks in one gather: rows starts[i] + 0..block (the last column is the target's end).
        starts = self.starts[indices] if isinstance(indices, slice) else self.starts[torch.as_tensor(indices)]
        rows = starts.unsqueeze(1) + torch.arange(self.block + 1, device=starts.device)
        window = self.tokens[rows].long()
        x = window[:, :-1].contiguous()
        batch = dict.fromkeys(self.names, x)
        batch["target"] = window[:, 1:].contiguous()
        return batch

    def subset(self, indices: torch.Tensor) -> TextBlocks:
        return TextBlocks(self.tokens, self.starts[indices], self.block, self.names)

    def values(self, name: str) -> torch.Tensor | None:
        # the whole stream: a superset of what this subset's blocks hold
        return self.tokens if name == "target" or name in self.names else None

    def held(self) -> list[torch.Tensor]:
        return [self.tokens, self.starts]

    def moved(self, move: Callable[[torch.Tensor], torch.Tensor]) -> TextBlocks:
        copied = copy.copy(self)
        copied.tokens, copied.starts = move(self.tokens), move(self.starts)
        return copied


def on_device(bundle: DataBundle, device: torch.device, budget: int) -> DataBundle | None:
    """`bundle` with its datasets' tensors on `device`, each tensor moved once (the training and
    validation subsets of a text share its token stream), so that batches are gathered there
    instead of copied there one by one; None when a dataset is not held in tensors (a plugin's
    without `held`/`moved`) or they hold more than `budget` bytes."""
    datasets = [d for d in (bundle.train, bundle.val) if d is not None]
    if not all(callable(getattr(d, "held", None)) and callable(getattr(d, "moved", None)) for d in datasets):
        return None
    tensors = {id(t): t for d in datasets for t in d.held()}
    if sum(t.numel() * t.element_size() for t in tensors.values()) > budget:
        return None
    placed = {key: t.to(device) for key, t in tensors.items()}
    moved = [d.moved(lambda t: placed[id(t)]) for d in datasets]
    return dataclasses.replace(
        bundle, train=moved[0], val=moved[1] if bundle.val is not None else None, device=torch.device(device)
    )


def field_values(dataset: Dataset | None, name: str) -> torch.Tensor | None:
    """A tensor holding every value that the items' field `name` takes in `dataset` (perhaps
    more), or None where the dataset cannot tell without reading every item (a plugin's)."""
    values = getattr(dataset, "values", None)
    return values(name) if callable(values) else None


# ---- the model's inputs -------------------------------------------------------------

_TORCH_DTYPES = {
    "float": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
    "int": torch.int64,
    "int8": torch.int8,
    "int16": torch.int16,
    "int32": torch.int32,
    "int64": torch.int64,
    "uint8": torch.uint8,
    "bool": torch.bool,
}


def input_bounds(graph) -> dict[str, int]:
    """The largest value the model's `assert`s allow each symbolic input size
    (`assert T <= ctx` gives {"T": ctx}); pass it to `make_data` as `bounds`."""
    from modelspec.summary import _upper_bound, constraints

    rules = constraints(graph)
    symbols = {s for t in graph.inputs.values() for d in t.shape for s in d.symbols()}
    bounds = {s: _upper_bound(s, rules, {}) for s in sorted(symbols)}
    return {s: b for s, b in bounds.items() if b is not None}


def _symbol(dim: Dim) -> str | None:
    """The name of a dim that is one bare symbol (`T`), else None."""
    if len(dim.terms) == 1 and dim.terms[0][1] == 1 and len(dim.terms[0][0]) == 1:
        atom = dim.terms[0][0][0]
        return atom if isinstance(atom, str) else None
    return None


def _shape_text(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def _matches(dims: tuple[Dim, ...], shape: tuple[int, ...], bounds: Mapping[str, int]) -> bool:
    """Whether an item shape fits the declared non-batch dims (symbols bind consistently)."""
    if len(dims) != len(shape):
        return False
    bindings: dict[str, int] = {}
    for dim, size in zip(dims, shape):
        name = _symbol(dim)
        if name is not None:
            if bindings.setdefault(name, size) != size or size > bounds.get(name, size):
                return False
    for dim, size in zip(dims, shape):
        value = dim.substitute(bindings)
        if value.is_const and value.value != size:
            return False
    return True


def _fit(name: str, declared: TensorType, shape: tuple[int, ...], what: str, bounds: Mapping[str, int], hint=""):
    """The per-item shape under which data of item shape `shape` feeds input
    `name`: the shape itself, without its size-1 dims, with a leading 1 (a
    channel), flattened, or the declared shape when all its sizes are constant."""
    dims = declared.shape[1:]
    numel = math.prod(shape)
    squeezed = tuple(s for s in shape if s != 1)
    candidates = [shape, squeezed, (1, *shape), (1, *squeezed), (numel,)]
    if all(d.is_const for d in dims):
        candidates.append(tuple(d.value for d in dims))
    for candidate in candidates:
        if math.prod(candidate) == numel and _matches(dims, candidate, bounds):
            return candidate
    message = (
        f"the data does not fit input `{name}`: the model declares {declared}, "
        f"and {what} gives items of shape {_shape_text(shape)}"
    )
    raise DataError(message + (f" ({hint})" if hint else ""))


def _check_batch_dim(name: str, declared: TensorType, batch: int) -> bool:
    """Whether the batch dim is a constant (then batches must be full)."""
    if declared.rank == 0:
        raise DataError(f"input `{name}` is declared {declared}: it has no batch dimension to feed data along")
    first = declared.shape[0]
    if first.is_const:
        if first.value != batch:
            raise DataError(
                f"input `{name}` is declared {declared}: its batch dimension is fixed at {first.value}, "
                f"but the dataset's `batch` is {batch}"
            )
        return True
    return False


def _convert(name: str, declared: TensorType, data: torch.Tensor, what: str) -> torch.Tensor:
    """Data cast to the input's dtype; integer inputs accept only integer data."""
    dtype = _TORCH_DTYPES.get(declared.dtype)
    if dtype is None:
        raise DataError(f"input `{name}` has dtype `{declared.dtype}`, which no dataset can produce")
    if (is_int(declared.dtype) or declared.dtype == "bool") and data.is_floating_point():
        raise DataError(
            f"input `{name}` is declared {declared} (integers), but {what} holds floating-point values ({data.dtype})"
        )
    return data.to(dtype)


def _one_input(inputs: Mapping[str, TensorType], dataset: str) -> tuple[str, TensorType]:
    if len(inputs) == 1:
        return next(iter(inputs.items()))
    if not inputs:
        raise DataError(f"dataset `{dataset}` needs a model with an input; the model declares none")
    names = ", ".join(f"`{n}`" for n in inputs)
    raise DataError(
        f"dataset `{dataset}` gives one input, but the model takes {len(inputs)} ({names}): "
        "use npz with one array per input name, or synthetic"
    )


# ---- paths --------------------------------------------------------------------------


def _resolve(path: str, base: Path | None) -> Path:
    p = Path(path).expanduser()
    if not p.is_absolute() and base is not None:
        base = Path(base)
        p = (base.parent if base.is_file() else base) / p
    return p


def _shown(written: str, resolved: Path) -> str:
    return f"`{written}`" if str(resolved) == written else f"`{written}` ({resolved})"


def _existing_file(written: str, base: Path | None, what: str) -> Path:
    p = _resolve(written, base)
    if not p.exists():
        raise DataError(f"{what}: no such file {_shown(written, p)}")
    if not p.is_file():
        raise DataError(f"{what}: {_shown(written, p)} is not a file")
    return p


# ---- the datasets -------------------------------------------------------------------


@dataclass
class _Raw:
    """What a dataset reader produces: tensors over all samples (first dim N)."""

    inputs: dict[str, torch.Tensor]  # model input name -> data
    fields: dict[str, torch.Tensor]  # "label", ...
    source: str
    classes: list | None = None
    image_scale: str | None = None  # digits / image_folder: unit, signed or standard


def _labels(values: np.ndarray, what: str) -> torch.Tensor:
    if values.dtype.kind in "iub":
        return torch.from_numpy(values.astype(np.int64))
    if values.dtype.kind == "f":
        return torch.from_numpy(values.astype(np.float32))
    raise DataError(f"{what} holds {values.dtype} values; labels must be numbers")


def _images(pixels: torch.Tensor, inputs, dataset: str, bounds, hint: str) -> dict[str, torch.Tensor]:
    name, declared = _one_input(inputs, dataset)
    shape = tuple(pixels.shape[1:])
    item = _fit(name, declared, shape, dataset, bounds, hint)
    return {name: _convert(name, declared, pixels.reshape(len(pixels), *item), dataset)}


def _digits(args, inputs, base, seed, bounds) -> _Raw:
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise DataError("dataset `digits` needs scikit-learn: pip install scikit-learn") from e
    digits = load_digits()
    pixels = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)  # [N, 1, 8, 8] in [0, 1]
    if args.size != 8:
        pixels = torch.nn.functional.interpolate(pixels, size=(args.size, args.size), mode="bilinear")
        pixels = pixels.clamp(0.0, 1.0)
    called = f"digits(size={args.size})"
    hint = f"`size={args.size}` gives {args.size}x{args.size} grey images; `channels=3` repeats them as RGB"
    if args.channels == 3:
        pixels = pixels.repeat(1, 3, 1, 1)  # the same grey values in each channel
        called = f"digits(size={args.size}, channels=3)"
        hint = f"`size={args.size}, channels=3` gives 3x{args.size}x{args.size} images"
    return _Raw(
        inputs=_images(pixels, inputs, called, bounds, hint),
        fields={"label": torch.from_numpy(digits.target.astype(np.int64))},
        source="sklearn.datasets.load_digits",
        classes=list(range(10)),
        image_scale=args.scale,
    )


def _synthetic(args, inputs, base, seed, bounds) -> _Raw:
    if not inputs:
        raise DataError("dataset `synthetic` needs a model with an input; the model declares none")
    g = torch.Generator().manual_seed(seed + 1)
    data = {}
    for name, declared in inputs.items():
        if declared.rank == 0:
            raise DataError(f"input `{name}` is declared {declared}: it has no batch dimension")
        sizes = []
        for dim in declared.shape[1:]:
            symbol = _symbol(dim)
            if dim.is_const:
                sizes.append(dim.value)
            elif symbol is not None and symbol in bounds:
                sizes.append(bounds[symbol])
            else:
                raise DataError(
                    f"dataset `synthetic` cannot shape input `{name}`: it is declared {declared}, and the size "
                    f"`{dim}` is not known (a constant, or a bound from an `assert`); use a real dataset"
                )
        shape = (args.samples, *sizes)
        if is_float(declared.dtype):
            values = torch.randn(shape, generator=g)
        elif declared.dtype == "bool":
            values = torch.randint(0, 2, shape, generator=g).bool()
        else:
            values = torch.randint(0, args.vocab, shape, generator=g)
        data[name] = _convert(name, declared, values, "synthetic")
    label = torch.randint(0, args.classes, (args.samples,), generator=g)
    return _Raw(data, {"label": label}, source=f"synthetic(seed={seed})", classes=list(range(args.classes)))


# The first bytes numpy itself tells its formats apart by (numpy.lib.format, numpy.load).
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a zip's first entry, or an empty zip's end record


def _numpy_kind(p: Path) -> str:
    """The file's kind by its first bytes: "npy", "npz" (a zip), "empty" or "other". numpy.load reads
    any other file as a pickle, and with allow_pickle=False refuses it as "pickled (object) data",
    which is wrong about a text file, so these are told apart before numpy sees them."""
    try:
        with open(p, "rb") as f:
            head = f.read(len(_NPY_MAGIC))
    except OSError as e:
        raise DataError(f"cannot read {p}: {e.strerror or e}") from e
    if not head:
        return "empty"
    if head.startswith(_NPY_MAGIC):
        return "npy"
    return "npz" if head.startswith(_ZIP_MAGICS) else "other"


def _load_npy(written: str, base, what: str) -> np.ndarray:
    p = _existing_file(written, base, what)
    kind = _numpy_kind(p)
    if kind == "npz":
        raise DataError(f"{what}: {_shown(written, p)} is a .npz archive, expected one .npy array (use npz(...))")
    if kind != "npy":
        empty = " (the file is empty)" if kind == "empty" else ""
        raise DataError(f"{what}: {_shown(written, p)} is not a .npy file (what numpy.save writes){empty}")
    try:
        return np.load(p, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - numpy raises many kinds
        raise DataError(f"{what}: cannot read {_shown(written, p)} as a .npy array: {e}") from e


def _array_input(array: np.ndarray, name: str, declared: TensorType, what: str, bounds) -> torch.Tensor:
    if array.ndim == 0:
        raise DataError(f"{what} is a single value, expected one row per sample")
    if array.dtype.kind not in "iubf":
        raise DataError(f"{what} holds {array.dtype} values, expected numbers")
    item = _fit(name, declared, tuple(array.shape[1:]), what, bounds)
    data = torch.from_numpy(np.ascontiguousarray(array)).reshape(len(array), *item)
    return _convert(name, declared, data, what)


def _npz(args, inputs, base, seed, bounds) -> _Raw:
    p = _existing_file(args.path, base, "npz")
    shown = _shown(args.path, p)
    kind = _numpy_kind(p)
    if kind == "npy":
        raise DataError(f"npz: {shown} holds a single array, expected a .npz archive with `{args.x}` and `{args.y}`")
    if kind != "npz":
        empty = " (the file is empty)" if kind == "empty" else ""
        raise DataError(f"npz: {shown} is not a .npz archive (a zip of .npy arrays, what numpy.savez writes){empty}")
    try:
        archive = np.load(p, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - a damaged zip: zipfile and numpy raise many kinds
        raise DataError(f"npz: cannot read {shown} as a .npz archive: {e}") from e
    with archive:
        keys = list(archive.files)

        def get(key: str, role: str) -> np.ndarray:
            if key not in keys:
                held = ", ".join(f"`{k}`" for k in keys) or "none"
                raise DataError(f"npz: {shown} has no array `{key}` ({role}); it holds {held}")
            try:
                array = archive[key]
            except Exception as e:  # noqa: BLE001
                if _holds_objects(archive, key):
                    raise DataError(
                        f"npz: array `{key}` of {shown} holds Python objects (pickled), "
                        "which are never unpickled: save it as numbers"
                    ) from e
                raise DataError(f"npz: cannot read array `{key}` of {shown}: {e}") from e
            if not isinstance(array, np.ndarray):  # numpy hands back the raw bytes of a member that is no .npy
                raise DataError(f"npz: `{key}` of {shown} is not a .npy array")
            return array

        data = {}
        if len(inputs) > 1:  # one array per model input, by name
            for name, declared in inputs.items():
                array = get(name, f"input `{name}`")
                data[name] = _array_input(array, name, declared, f"array `{name}` of {shown}", bounds)
        else:
            name, declared = _one_input(inputs, "npz")
            data[name] = _array_input(get(args.x, "the inputs"), name, declared, f"array `{args.x}` of {shown}", bounds)
        y = get(args.y, "the labels")
    if y.ndim == 0:
        raise DataError(f"npz: array `{args.y}` of {shown} is a single value, expected one label per sample")
    _same_length({**{k: len(v) for k, v in data.items()}, args.y: len(y)}, shown)
    return _Raw(data, {"label": _labels(y, f"npz: array `{args.y}` of {shown}")}, source=str(p))


def _holds_objects(archive, key: str) -> bool:
    """Whether member `key` of an npz archive is an object array (numpy stores those pickled)."""
    from numpy.lib import format as npy_format

    try:
        with archive.zip.open(f"{key}.npy") as f:
            version = npy_format.read_magic(f)
            read = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
            return read(f)[2].hasobject
    except Exception:  # noqa: BLE001 - unreadable header: the caller reports numpy's own reason
        return False


def _same_length(lengths: dict[str, int], where: str) -> None:
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"`{k}` has {n}" for k, n in lengths.items())
        raise DataError(f"{where}: the arrays hold different numbers of samples: {listed}")


def _npy(args, inputs, base, seed, bounds) -> _Raw:
    name, declared = _one_input(inputs, "npy")
    x = _load_npy(args.x_path, base, "npy")
    y = _load_npy(args.y_path, base, "npy") if args.y_path is not None else None
    xp = _resolve(args.x_path, base)
    data = {name: _array_input(x, name, declared, f"npy: {_shown(args.x_path, xp)}", bounds)}
    fields = {}
    if y is not None:
        yp = _resolve(args.y_path, base)
        if y.ndim == 0:
            raise DataError(f"npy: {_shown(args.y_path, yp)} is a single value, expected one label per sample")
        _same_length({args.x_path: len(x), args.y_path: len(y)}, "npy")
        fields["label"] = _labels(y, f"npy: {_shown(args.y_path, yp)}")
    return _Raw(data, fields, source=str(xp))


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _csv(args, inputs, base, seed, bounds) -> _Raw:
    name, declared = _one_input(inputs, "csv")
    p = _existing_file(args.path, base, "csv")
    shown = _shown(args.path, p)
    try:
        with open(p, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"csv: cannot read {shown} as UTF-8 CSV: {e}") from e
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if not rows:
        raise DataError(f"csv: {shown} is empty; expected a header row naming the columns, then one row per sample")
    header = [h.strip() for h in rows[0]]
    body = rows[1:]
    if args.label not in header:
        columns = ", ".join(f"`{h}`" for h in header)
        raise DataError(f"csv: {shown} has no column `{args.label}` (the label); its columns are {columns}")
    if not body:
        raise DataError(f"csv: {shown} has a header but no rows")
    for line, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise DataError(f"csv: line {line} of {shown} has {len(row)} cells, the header {len(header)}")
    columns = {h: [row[i].strip() for row in body] for i, h in enumerate(header)}
    features, ignored = [], []
    for column, cells in columns.items():
        if column == args.label:
            continue
        numbers = [_number(c) for c in cells]
        if all(v is None for v in numbers):
            ignored.append(column)  # a text column (ids, names): not a feature
            continue
        for line, (cell, v) in enumerate(zip(cells, numbers), start=2):
            if v is None:
                raise DataError(f"csv: column `{column}` of {shown} has {cell!r} on line {line}, expected a number")
        features.append(column)
    if not features:
        raise DataError(f"csv: {shown} has no numeric column besides the label `{args.label}`")
    x = torch.tensor([[float(c) for c in columns[f]] for f in features], dtype=torch.float64).T.contiguous()
    cells = columns[args.label]
    numbers = [_number(c) for c in cells]
    classes = None
    if all(v is not None for v in numbers):
        if all(float(v).is_integer() for v in numbers):
            label = torch.tensor([int(v) for v in numbers], dtype=torch.int64)
        else:
            label = torch.tensor(numbers, dtype=torch.float32)
    else:  # class names: indices in sorted order
        if any(c == "" for c in cells):
            raise DataError(f"csv: column `{args.label}` of {shown} has an empty cell on line {cells.index('') + 2}")
        classes = sorted(set(cells))
        index = {c: i for i, c in enumerate(classes)}
        label = torch.tensor([index[c] for c in cells], dtype=torch.int64)
    what = f"csv {shown} ({len(features)} feature columns)"
    item = _fit(name, declared, (len(features),), what, bounds)
    return _Raw(
        {name: _convert(name, declared, x.reshape(len(x), *item), what)},
        {"label": label},
        source=str(p),
        classes=classes,
    )


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}


def _image_folder(args, inputs, base, seed, bounds) -> _Raw:
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError as e:
        raise DataError("dataset `image_folder` needs Pillow: pip install pillow") from e
    root = _resolve(args.path, base)
    shown = _shown(args.path, root)
    if not root.exists():
        raise DataError(f"image_folder: no such folder {shown}")
    if not root.is_dir():
        raise DataError(f"image_folder: {shown} is not a folder (expected one subfolder of images per class)")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(f"image_folder: {shown} has no subfolders; expected one subfolder of images per class")
    mode = "L" if args.channels == 1 else "RGB"
    images, labels = [], []
    for index, name in enumerate(classes):
        files = sorted(f for f in (root / name).rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"image_folder: class folder `{name}` of {shown} holds no images")
        for f in files:
            try:
                with Image.open(f) as im:
                    im = im.convert(mode).resize((args.size, args.size), Image.Resampling.BILINEAR)
                    array = np.asarray(im, dtype=np.float32) / 255.0
            except (UnidentifiedImageError, OSError) as e:
                raise DataError(f"image_folder: cannot read image {f}: {e}") from e
            images.append(array.reshape(args.size, args.size, args.channels).transpose(2, 0, 1))
            labels.append(index)
    pixels = torch.from_numpy(np.stack(images))
    hint = f"`size={args.size}, channels={args.channels}`"
    return _Raw(
        inputs=_images(pixels, inputs, f"image_folder {shown}", bounds, hint),
        fields={"label": torch.tensor(labels, dtype=torch.int64)},
        source=str(root),
        classes=classes,
        image_scale=args.scale,
    )


STDLIB_PREFIX = "stdlib:"


def stdlib_text(name: str) -> str:
    """The source of a standard-library module, or of every `.py` file of a
    package (sorted by path), joined by newlines."""
    stdlib = getattr(sys, "stdlib_module_names", None)
    top = name.split(".")[0]
    if not name or (stdlib is not None and top not in stdlib):
        raise DataError(f"text: `{STDLIB_PREFIX}{name}` names no module of Python's standard library")
    try:
        found = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        found = None
    if found is None or not found.origin or not found.origin.endswith(".py"):
        raise DataError(f"text: `{STDLIB_PREFIX}{name}`: the standard-library module `{name}` has no Python source")
    origin = Path(found.origin)
    files = sorted(origin.parent.rglob("*.py")) if found.submodule_search_locations else [origin]
    return "\n".join(f.read_text(encoding="utf-8") for f in files)


def _text(args, inputs, base, seed, bounds) -> tuple[_Raw, Tokenizer, torch.Tensor, str]:
    name, declared = _one_input(inputs, "text")
    if not is_int(declared.dtype) or declared.rank != 2:
        raise DataError(
            f"dataset `text` gives token ids [block], but input `{name}` is declared {declared}; "
            "a language model takes int64[B, T]"
        )
    seq = declared.shape[1]
    symbol = _symbol(seq)
    if seq.is_const and seq.value != args.block:
        raise DataError(
            f"the data does not fit input `{name}`: the model declares {declared}, and text(block={args.block}) "
            f"gives items of shape [{args.block}] (set `block={seq.value}`)"
        )
    if symbol is not None and symbol in bounds and args.block > bounds[symbol]:
        raise DataError(
            f"text(block={args.block}) is longer than the model's context: input `{name}` is declared {declared} "
            f"and its asserts allow `{symbol}` up to {bounds[symbol]} (set `block` to at most {bounds[symbol]})"
        )
    if args.path.startswith(STDLIB_PREFIX):
        module = args.path[len(STDLIB_PREFIX) :]
        text = stdlib_text(module)
        raw = text.encode("utf-8")
        source = f"{STDLIB_PREFIX}{module} (Python {sys.version_info.major}.{sys.version_info.minor})"
    else:
        p = _existing_file(args.path, base, "text")
        raw = p.read_bytes()
        source = str(p)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"text: {_shown(args.path, p)} is not UTF-8 text (byte {e.start}: {e.reason})") from e
    if args.tokenizer in ("tokenizers", "tiktoken"):
        tokenizer = _file_tokenizer(args.tokenizer, str(args.tokenizer_file), base)
        tokens = torch.tensor(tokenizer.encode(text), dtype=torch.int32)
    elif args.tokenizer == "byte":
        tokenizer = Tokenizer("byte")
        tokens = torch.frombuffer(bytearray(raw), dtype=torch.uint8) if raw else torch.zeros(0, dtype=torch.uint8)
    else:
        vocab = "".join(sorted(set(text)))
        tokenizer = Tokenizer("char", vocab)
        index = {c: i for i, c in enumerate(vocab)}
        tokens = torch.tensor([index[c] for c in text], dtype=torch.int32)
    if len(tokens) < args.block + 1:
        raise DataError(
            f"text: {source} has {len(tokens)} tokens, too few for one block: "
            f"`block={args.block}` needs at least {args.block + 1}"
        )
    return _Raw({name: tokens}, {}, source=source), tokenizer, tokens, name


def _file_tokenizer(kind: str, written: str, base: Path | None):
    """A `tokenizers` or `tiktoken` tokenizer read from a local file (relative to the spec's folder)."""
    from modelspec.train.text_tokenizers import TokenizerError, load_file_tokenizer

    path = _resolve(written, base)
    try:
        return load_file_tokenizer(kind, path, _shown(written, path))
    except TokenizerError as exc:
        raise DataError(f"text: {exc}") from None


# ---- the built-in datasets' runtimes (each component's `build`) ---------------------


def _split(n: int, share: float, seed: int, dataset: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Training and validation indices (each in increasing order) from a seeded permutation."""
    if n == 0:
        raise DataError(f"dataset `{dataset}` is empty")
    if share >= 1:
        return torch.arange(n), None
    if n < 2:
        raise DataError(f"dataset `{dataset}` has 1 sample: too few to split (use `split=1`, or more data)")
    n_train = min(max(math.floor(n * share + 1e-9), 1), n - 1)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[:n_train].sort().values, order[n_train:].sort().values


def _scale(raw: _Raw, train: torch.Tensor, info: dict) -> None:
    """Image pixels in [0, 1]: kept (`unit`), mapped to [-1, 1] (`signed`), or
    standardised with the training split's mean and std (`standard`)."""
    if raw.image_scale in (None, "unit"):
        return
    (name,) = raw.inputs
    x = raw.inputs[name]
    if raw.image_scale == "signed":
        raw.inputs[name] = x * 2 - 1
    else:
        part = x[train].double()
        mean, std = part.mean().item(), part.std().item() or 1.0
        raw.inputs[name] = ((x.double() - mean) / std).to(x.dtype)
        info["normalize"] = {"mean": mean, "std": std}


def _raw_bundle(raw: _Raw, split: float, seed: int, dataset: str) -> DataBundle:
    """Tensors over all samples, split by a seeded permutation (and scaled, for images)."""
    clash = set(raw.inputs) & set(raw.fields)
    if clash:
        raise DataError(f"the model's input `{clash.pop()}` has the name of a field of dataset `{dataset}`")
    tensors = {**raw.inputs, **raw.fields}
    n = len(next(iter(tensors.values()))) if tensors else 0
    train_idx, val_idx = _split(n, split, seed, dataset)
    info: dict[str, Any] = {"dataset": dataset, "source": raw.source, "samples": n}
    _scale(raw, train_idx, info)
    if raw.classes is not None:
        info["classes"] = raw.classes
    try:
        full = TensorItems({**raw.inputs, **raw.fields})
    except ValueError as exc:
        raise DataError(f"dataset `{dataset}`: {exc}") from None
    train = full.subset(train_idx)
    val = full.subset(val_idx) if val_idx is not None else None
    shapes = {k: list(t.shape[1:]) for k, t in full.tensors.items()}
    info.update(train=len(train), val=len(val) if val is not None else 0, shapes=shapes)
    return DataBundle(train, val, tuple(full.tensors), None, info)


def tensor_bundle(
    inputs: Mapping[str, torch.Tensor],
    fields: Mapping[str, torch.Tensor],
    *,
    split: float,
    seed: int,
    dataset: str,
    source: str = "",
    classes: list | None = None,
) -> DataBundle:
    """A DataBundle of tensors over all samples (first dimension: the sample), split into a
    training share `split` and validation by a permutation seeded with `seed`: what a
    dataset's `build` returns when its data fits in memory. `inputs` are keyed by the
    model's input names, `fields` by the names a loss references (`label`)."""
    return _raw_bundle(_Raw(dict(inputs), dict(fields), source, classes), split, seed, dataset)


def _from_reader(reader, dataset: str):
    """The `build` of a dataset whose reader gives tensors over all samples."""

    def build(args, inputs, seed, *, base=None, bounds=None) -> DataBundle:
        return _raw_bundle(reader(args, inputs, base, seed, dict(bounds or {})), args.split, seed, dataset)

    build.__name__ = build.__qualname__ = f"{dataset}_dataset"
    return build


digits_dataset = _from_reader(_digits, "digits")
synthetic_dataset = _from_reader(_synthetic, "synthetic")
npz_dataset = _from_reader(_npz, "npz")
npy_dataset = _from_reader(_npy, "npy")
csv_dataset = _from_reader(_csv, "csv")
image_folder_dataset = _from_reader(_image_folder, "image_folder")

TEXT_FIELDS = ("tokens",)  # what a text item holds besides the model's input and `target`


def text_dataset(args, inputs, seed, *, base=None, bounds=None) -> DataBundle:
    """Blocks of `block` tokens; `target` is each block shifted by one token."""
    raw, tokenizer, tokens, name = _text(args, inputs, base, seed, dict(bounds or {}))
    starts = torch.arange(0, len(tokens) - args.block, args.block)
    names = tuple(dict.fromkeys((name, *TEXT_FIELDS)))
    full = TextBlocks(tokens, starts, args.block, names)
    fields = (*names, "target")
    train_idx, val_idx = _split(len(full), args.split, seed, "text")
    train = full.subset(train_idx)
    val = full.subset(val_idx) if val_idx is not None else None
    info = {
        "dataset": "text",
        "source": raw.source,
        "samples": len(full),
        "train": len(train),
        "val": len(val) if val is not None else 0,
        "shapes": {k: [args.block] for k in fields},
    }
    return DataBundle(train, val, fields, tokenizer, info)


# ---- make_data ----------------------------------------------------------------------


def make_data(
    spec: ComponentSpec,
    inputs: Mapping[str, TensorType | str],
    seed: int,
    registry=None,
    *,
    base: Path | str | None = None,
    bounds: Mapping[str, int] | None = None,
) -> DataBundle:
    """Read the dataset `spec` for a model with `inputs` (name -> type, or type
    text) into memory and split it; a DataError for any mistake.

    The dataset is the component of `registry` (None: the process-wide one)
    and is read by its `build` (see `modelspec.train.builders` for what it
    receives), built-in or a plugin's alike. `base`: the folder relative paths
    are resolved against (the spec file's folder; a file means its folder).
    `bounds`: the largest values of symbolic input sizes (`input_bounds(graph)`):
    synthetic data uses them as sizes, and text checks `block` against them."""
    from modelspec.train.builders import runtime

    if spec.kind != "dataset":
        raise DataError(f"`{spec.name}` is {spec.kind}, not a dataset")
    if registry is None:
        from modelspec.plugins import registry as process_registry

        registry = process_registry()
    component = registry.component("dataset", spec.name)
    if component is None:
        raise DataError(f"no dataset `{spec.name}` is registered: `mspec plugins` lists the plugins and what they add")
    owner = registry.component_owner.get(("dataset", spec.name))
    plugin = owner is not None and not registry.is_builtin(owner)
    who = f"dataset `{spec.name}`" + (f" of the plugin {registry.describe(owner)}" if plugin else "")
    args = component.parse(spec.args)
    types = {name: tensor_type(t) for name, t in inputs.items()}
    batch = _arg(args, "batch", 32)
    drop_last = any([_check_batch_dim(name, t, batch) for name, t in types.items()])
    try:
        build = runtime(component)
    except NotImplementedError:
        raise DataError(
            f"{who} has no runtime: its component sets no `build`, so `mspec train` cannot load it"
        ) from None
    except (ImportError, AttributeError, TypeError, ValueError) as exc:
        raise DataError(
            f"{who}: its `build` {component.build!r} cannot be used ({type(exc).__name__}: {exc})"
        ) from None
    base = Path(base) if base is not None else None
    try:
        bundle = build(args, types, seed, base=base, bounds=dict(bounds or {}))
    except DataError:
        raise
    except Exception as exc:
        if not plugin:
            raise
        # A plugin's code broke: say whose, as for a plugin op's shape rule.
        raise DataError(
            f"{who} failed while loading: {type(exc).__name__}: {exc} "
            f"(a fault in the plugin `{owner}`, not in the spec)"
        ) from None
    if not isinstance(bundle, DataBundle):
        raise DataError(f"{who}: its `build` returned {bundle!r:.60}, not a `DataBundle`")
    missing = [k for k in (*types, *component.data_fields(args)) if k not in bundle.fields]
    if missing:
        listed = ", ".join(f"`{k}`" for k in missing)
        raise DataError(f"{who} gives no {listed}: its items hold {', '.join(bundle.fields) or 'nothing'}")
    bundle.info.setdefault("dataset", spec.name)
    bundle.drop_last = bundle.drop_last or drop_last
    if bundle.drop_last and len(bundle.train) < batch:
        raise DataError(
            f"the model's batch dimension is fixed at {batch}, "
            f"but the training split has only {len(bundle.train)} samples"
        )
    return bundle


def check_vocabulary(bundle: DataBundle, size: int, where: str = "the model's embedding") -> None:
    """DataError when the tokenizer's vocabulary is larger than `size` entries."""
    if bundle.tokenizer is not None and bundle.tokenizer.size > size:
        kind = bundle.tokenizer.kind
        raise DataError(
            f"the {kind} tokenizer of {bundle.info.get('source', 'the text')} has {bundle.tokenizer.size} tokens, "
            f"more than the {size} of {where}: raise the model's vocabulary to at least {bundle.tokenizer.size}"
        )


# ---- loaders ------------------------------------------------------------------------


class EpochBatches(Sampler[torch.Tensor]):
    """The batches of one epoch, as index tensors: the epoch's order (a permutation seeded by
    `seed + epoch`, or 0..n-1 without `shuffle`) cut into batches of `batch` (the last one shorter
    unless `drop_last`), from batch `start` on. With `world` > 1 processes (data-parallel
    training) only full batches are cut, and process `rank` takes every `world`-th index of each
    from the `rank`-th: the processes together see the batches one process would."""

    def __init__(
        self,
        n: int,
        batch: int,
        *,
        shuffle: bool,
        seed: int,
        epoch: int,
        start: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world: int = 1,
        device: torch.device | None = None,
    ):
        self.n, self.batch, self.shuffle, self.seed, self.epoch = n, batch, shuffle, seed, epoch
        self.start, self.rank, self.world = start, rank, world
        self.device = device  # where the indices go (the data's device): one copy per epoch, not per batch
        self.total = n // batch if drop_last or world > 1 else math.ceil(n / batch)

    def order(self) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.n)
        return torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + self.epoch))

    def __iter__(self):
        order = self.order()  # the same permutation wherever the data is (seeded on the CPU)
        if self.device is not None:
            order = order.to(self.device)
        for k in range(self.start, self.total):
            indices = order[k * self.batch : (k + 1) * self.batch]
            yield indices[self.rank :: self.world] if self.world > 1 else indices

    def __len__(self) -> int:
        return max(self.total - self.start, 0)

    def runs(self) -> Iterator[slice] | None:
        """The batches as slices where each is a run of consecutive items (in order, one
        process), else None."""
        if self.shuffle or self.world > 1:
            return None
        return (slice(k * self.batch, min((k + 1) * self.batch, self.n)) for k in range(self.start, self.total))


class Batches:
    """The batches of an EpochBatches fetched in this process (`workers=0`): what a DataLoader
    gives, without its per-batch machinery (which costs as much as a small model's step)."""

    def __init__(self, dataset: Dataset, batches: EpochBatches):
        self.dataset, self.batches = dataset, batches

    def __iter__(self):
        # in order, a dataset that takes slices gives views of its tensors: no copy per batch
        runs = self.batches.runs() if getattr(self.dataset, "takes_slices", False) else None
        # a whole gather per tensor where the dataset can (`__getitems__`), else item by item
        fetch = getattr(self.dataset, "__getitems__", None) or self.collated
        yield from map(fetch, runs or self.batches)

    def collated(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        return default_collate([self.dataset[int(i)] for i in indices])

    def __len__(self) -> int:
        return len(self.batches)


def seed_worker(worker_id: int) -> None:
    """Seed `random` and numpy in a loader worker from torch's per-worker seed."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def _batched(batch):
    """Batches come whole from the datasets' `__getitems__`; anything else is collated as usual."""
    if isinstance(batch, dict):
        return batch
    return default_collate(batch)


def _arg(args, name: str, default):
    if isinstance(args, ComponentSpec):
        args = args.args
    if isinstance(args, Mapping):
        return args.get(name, default)
    return getattr(args, name, default)


def make_loaders(
    bundle: DataBundle, args, seed: int, epoch: int = 0, skip_batches: int = 0, rank: int = 0, world: int = 1
) -> tuple[Batches | DataLoader, Batches | DataLoader | None]:
    """The training batches of epoch `epoch`, starting after `skip_batches`
    batches, and the validation batches (in order; None without validation
    data). `args`: the dataset's arguments (its Args, a mapping, or the
    ComponentSpec); read are `batch`, `shuffle` (default true), `workers` (0:
    fetched in this process; more: a DataLoader with that many worker
    processes, giving the same batches). With `world` > 1 processes, the
    training batches are process `rank`'s shares of the global batches of
    `batch` items (see EpochBatches)."""
    batch = _arg(args, "batch", 32)
    shuffle = _arg(args, "shuffle", True)
    workers = _arg(args, "workers", 0)
    n = len(bundle.train)
    if world > 1 and batch % world:
        raise DataError(f"`batch={batch}` is the global batch: it must be a multiple of the {world} processes")
    train_batches = EpochBatches(
        n,
        batch,
        shuffle=shuffle,
        seed=seed,
        epoch=epoch,
        start=skip_batches,
        drop_last=bundle.drop_last,
        rank=rank,
        world=world,
        device=bundle.device,
    )
    if skip_batches < 0 or skip_batches > train_batches.total:
        raise DataError(f"cannot skip {skip_batches} batches: an epoch of the training data has {train_batches.total}")

    def loader(dataset: Dataset, batches: EpochBatches, tag: int) -> Batches | DataLoader:
        if not workers:
            return Batches(dataset, batches)
        return DataLoader(
            dataset,
            batch_sampler=batches,
            num_workers=workers,
            collate_fn=_batched,
            worker_init_fn=seed_worker,
            generator=torch.Generator().manual_seed(seed + epoch + tag),
        )

    train = loader(bundle.train, train_batches, 0)
    val = None
    if bundle.val is not None:
        size = len(bundle.val)
        in_order = EpochBatches(
            size, batch, shuffle=False, seed=seed, epoch=epoch, drop_last=bundle.drop_last, device=bundle.device
        )
        val = loader(bundle.val, in_order, 1)
    return train, val
