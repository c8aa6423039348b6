"""Checkpoints that never lose work.

A checkpoint is a folder `checkpoints/step-00001200/` holding

    model.safetensors   the weights (safetensors: loading never unpickles)
    state.safetensors   every other tensor: optimizer state, RNG states
    state.json          step, epoch, data position, optimizer hyperparameters,
                        scheduler state, metrics, the hash of the model's IR,
                        and the SHA-256 of both tensor files

It is written into a temporary folder beside the others, each file flushed
and fsynced, `state.json` last, then the folder is renamed into place and
the parent fsynced: a crash at any moment leaves either the complete new
checkpoint or none, and the previous one untouched. Loading checks the
format, the IR hash (a checkpoint of another spec is refused) and both
file hashes (a truncated or bit-flipped file is refused, with its name);
`latest_valid` falls back to the newest checkpoint that passes.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file, save_model

FORMAT = 1
PREFIX = "step-"
TMP_PREFIX = ".tmp-"
OLD_PREFIX = ".tmp-old-"  # a checkpoint moved aside while another of its step replaces it
REFUSED = "refused"  # the folder, inside checkpoints/, of the checkpoints a resume refused


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message names the file and why."""


def ir_hash(model_ir) -> str:
    """A hash of the model's checked IR without source positions: reformatting
    a spec keeps its checkpoints; changing the model does not."""

    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("span", "input_spans")}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    data = strip(json.loads(model_ir.graph.model_dump_json()))
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---- what goes in -------------------------------------------------------------------------


@dataclass
class TrainingState:
    """Everything besides the weights that resuming needs."""

    step: int = 0  # optimizer steps done
    epoch: int = 0  # the epoch in progress
    batch: int = 0  # batches of that epoch already consumed
    optimizers: dict[str, Any] = field(default_factory=dict)  # role -> optimizer.state_dict()
    schedulers: dict[str, Any] = field(default_factory=dict)  # role -> scheduler.state_dict()
    rng: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # metrics, best value, early-stop count ...
    log_bytes: int | None = None  # the length of metrics.jsonl when it was saved: a resume cuts what follows


def capture_rng() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _split_tensors(value: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace tensors in a nested structure by references into `tensors`."""
    if isinstance(value, torch.Tensor):
        key = prefix
        tensors[key] = value.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(value, dict):
        return {str(k): _split_tensors(v, f"{prefix}.{k}", tensors) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_split_tensors(v, f"{prefix}.{i}", tensors) for i, v in enumerate(value)]
    return value


def _join_tensors(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__tensor__"}:
            return tensors[value["__tensor__"]]
        return {k: _join_tensors(v, tensors) for k, v in value.items()}
    if isinstance(value, list):
        return [_join_tensors(v, tensors) for v in value]
    return value


def _optimizer_state_keys_to_int(state: dict) -> dict:
    # JSON turns the optimizer's integer parameter ids into strings; torch wants ints back.
    # (Under fsdp the parameters are named, not numbered: those keys stay.)
    if "state" in state:
        state = dict(state)
        state["state"] = {int(k) if k.isdigit() else k: v for k, v in state["state"].items()}
    return state


# ---- writing --------------------------------------------------------------------------------


def _one_name_per_tensor(weights: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(weights with one name per tensor held under several, {dropped: kept}): the first name in
    sorted order is kept, as safetensors' save_model keeps it for a module's tied parameters, so
    the file is the one an unsharded model gives."""

    def same(tensor: torch.Tensor) -> tuple:  # the same memory seen the same way: one tensor
        pointer = tensor.untyped_storage().data_ptr()
        if not pointer:  # no memory (empty): only the object itself
            return (id(tensor),)
        return (pointer, tensor.storage_offset(), tuple(tensor.shape), tensor.stride(), tensor.dtype)

    names: dict[tuple, list[str]] = {}
    for name, tensor in weights.items():
        names.setdefault(same(tensor), []).append(name)
    unique, dropped = {}, {}
    for name, tensor in weights.items():
        kept = min(names[same(tensor)])
        if name == kept:
            unique[name] = tensor.contiguous()
        else:
            dropped[name] = kept
    return unique, dropped


def save(
    folder: Path,
    model: torch.nn.Module | Mapping[str, torch.Tensor],
    state: TrainingState,
    spec_hash: str,
    *,
    hook=None,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write checkpoint `folder/step-NNNNNNNN` atomically; return its path. `model`: the module,
    or its full state_dict (gathered from the shards of an fsdp run).

    `hook(phase)` is called between the phases of the write (tests inject
    crashes there)."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{PREFIX}{state.step:08d}"
    tmp = folder / f"{TMP_PREFIX}{final.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    phase = hook or (lambda name: None)
    phase("begin")
    if isinstance(model, torch.nn.Module):
        save_model(model, str(tmp / "model.safetensors"), metadata=metadata)
    else:
        unique, dropped = _one_name_per_tensor(model)
        save_file(unique, str(tmp / "model.safetensors"), metadata={**dropped, **(metadata or {})})
    _fsync_file(tmp / "model.safetensors")
    phase("model")
    tensors: dict[str, torch.Tensor] = {}
    rest = {
        "optimizers": _split_tensors(state.optimizers, "optimizers", tensors),
        "schedulers": _split_tensors(state.schedulers, "schedulers", tensors),
        "rng": _split_tensors(state.rng, "rng", tensors),
    }
    save_file(tensors, str(tmp / "state.safetensors"))
    _fsync_file(tmp / "state.safetensors")
    phase("state")
    meta = {
        "format": FORMAT,
        "step": state.step,
        "epoch": state.epoch,
        "batch": state.batch,
        "spec_hash": spec_hash,
        "extra": state.extra,
        "log_bytes": state.log_bytes,
        "saved": time.time(),  # when: `--resume` without a run picks the run with the newest checkpoint
        **rest,
        "files": {name: _sha256(tmp / name) for name in ("model.safetensors", "state.safetensors")},
    }
    with open(tmp / "state.json", "w", encoding="utf-8") as handle:
        json.dump(meta, handle)
        handle.flush()
        os.fsync(handle.fileno())
    phase("json")
    _fsync_dir(tmp)
    if final.exists():  # a checkpoint of this step from an interrupted run: replace it whole
        old = folder / f"{OLD_PREFIX}{final.name}-{os.getpid()}"
        final.rename(old)
        phase("replace")  # a crash here leaves both aside: clean_temporary puts the old one back
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(final)
    phase("rename")
    _fsync_dir(folder)
    phase("done")
    return final


def prune(folder: Path, keep: int | None, protect: set[Path] = frozenset()) -> None:
    """Keep the newest `keep` checkpoints (by step) and those in `protect`: the caller protects
    the checkpoint it just wrote and the best one, which a stale checkpoint of a higher step
    would otherwise push out of the newest `keep`."""
    if keep is None:
        return
    found = checkpoints(folder)
    for path in found[:-keep] if len(found) > keep else []:
        if path not in protect:
            # Renamed out of the list first: a crash while deleting leaves no half-deleted checkpoint.
            doomed = folder / f"{TMP_PREFIX}pruned-{path.name}-{os.getpid()}"
            path.rename(doomed)
            shutil.rmtree(doomed, ignore_errors=True)


def set_aside(folder: Path, paths: list[Path]) -> list[Path]:
    """Move checkpoints `paths` of `folder` (refused ones) into `folder/refused/`, each under a
    name not taken there, and return where they went: out of the list that resuming, pruning and
    step numbering read, and never deleted (they are the user's data, damaged or not)."""
    aside = folder / REFUSED
    moved = []
    for path in paths:
        aside.mkdir(exist_ok=True)
        target, k = aside / path.name, 1
        while target.exists():
            target, k = aside / f"{path.name}-{k}", k + 1
        path.rename(target)
        moved.append(target)
    if moved:
        _fsync_dir(folder)
    return moved


def clean_temporary(folder: Path) -> None:
    """Remove what a crash left behind: half-written or half-deleted checkpoints;
    a complete checkpoint moved aside to be replaced goes back into place."""
    if not folder.is_dir():
        return
    for path in sorted(folder.iterdir()):
        name = path.name
        if name.startswith(OLD_PREFIX):
            original = folder / name[len(OLD_PREFIX) :].rsplit("-", 1)[0]
            if original.name.startswith(PREFIX) and not original.exists():
                path.rename(original)
                continue
        if name.startswith(TMP_PREFIX):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
    _fsync_dir(folder)


# ---- reading --------------------------------------------------------------------------------


def checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    if not folder.is_dir():
        return []
    found = [
        p for p in folder.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and p.name[len(PREFIX) :].isdigit()
    ]
    return sorted(found, key=step_of)


def step_of(path: Path) -> int:
    """The step of checkpoint folder `path` (`step-00001200`: 1200)."""
    return int(path.name[len(PREFIX) :])


def read_meta(path: Path, spec_hash: str | None) -> dict:
    """Validate checkpoint `path` and return its state.json; raise CheckpointError."""
    meta_file = path / "state.json"
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{meta_file}: not a readable checkpoint state ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{meta_file}: not a modelspec checkpoint of format {FORMAT}")
    if spec_hash is not None and meta.get("spec_hash") != spec_hash:
        raise CheckpointError(f"{path}: written for another model (its IR differs from this spec's)")
    files = meta.get("files")
    if not isinstance(files, dict) or set(files) != {"model.safetensors", "state.safetensors"}:
        raise CheckpointError(f"{meta_file}: does not list the hashes of model.safetensors and state.safetensors")
    for name, digest in files.items():
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"{file}: missing")
        if _sha256(file) != digest:
            raise CheckpointError(f"{file}: damaged (its content does not match the hash recorded when it was written)")
    return meta


def load(
    path: Path, model: torch.nn.Module | Callable[[dict[str, torch.Tensor]], None], spec_hash: str | None
) -> TrainingState:
    """Load weights into `model` (or hand them to it, a function: an fsdp run shards them) and
    return the rest; raise CheckpointError."""
    meta = read_meta(path, spec_hash)
    try:
        if isinstance(model, torch.nn.Module):
            missing, unexpected = load_model(model, str(path / "model.safetensors"), strict=False)
        else:
            missing = unexpected = []
            model(load_file(str(path / "model.safetensors")))
        tensors = load_file(str(path / "state.safetensors"))
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise CheckpointError(f"{path / 'model.safetensors'}: cannot be loaded ({exc})") from None
    if missing or unexpected:
        raise CheckpointError(f"{path / 'model.safetensors'}: does not fit this model")
    optimizers = {k: _optimizer_state_keys_to_int(v) for k, v in _join_tensors(meta["optimizers"], tensors).items()}
    return TrainingState(
        step=meta["step"],
        epoch=meta["epoch"],
        batch=meta["batch"],
        optimizers=optimizers,
        schedulers=_join_tensors(meta["schedulers"], tensors),
        rng=_join_tensors(meta["rng"], tensors),
        extra=meta.get("extra", {}),
        log_bytes=meta.get("log_bytes"),
    )


def latest_valid(folder: Path, spec_hash: str) -> tuple[Path | None, list[str]]:
    """The newest checkpoint that passes validation, and why newer ones did not."""
    refused = []
    for path in reversed(checkpoints(folder)):
        try:
            read_meta(path, spec_hash)
            return path, refused
        except CheckpointError as exc:
            refused.append(str(exc))
    return None, refused


def load_weights(path: Path, model: torch.nn.Module, skip: Iterable[str] = ()) -> tuple[list[str], list[str]]:
    """Weights for fine-tuning (`init`) or a teacher: a checkpoint folder, a
    .safetensors file, or a PyTorch file read with `weights_only=True` (a pickle
    that carries code is refused, never run). The weights of the modules named
    in `skip` (a new head, of any shape) are left out. Returns (missing,
    unexpected) keys; a tied parameter loaded under one of its names is not missing."""
    if path.is_dir():
        if (path / "state.json").is_file():
            read_meta(path, None)  # a checkpoint folder: its files must match their recorded hashes
        path = path / "model.safetensors"
    if not path.is_file():
        raise CheckpointError(f"{path}: does not exist")
    if path.suffix == ".safetensors":
        try:
            state = load_file(str(path))
        except (SafetensorError, OSError, RuntimeError) as exc:
            raise CheckpointError(f"{path}: cannot be loaded ({exc})") from None
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # UnpicklingError for anything but plain tensors and containers
            raise CheckpointError(f"{path}: refused: not a plain weights file ({type(exc).__name__})") from None
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise CheckpointError(f"{path}: refused: not a mapping of names to tensors")
    skip = tuple(skip)
    state = {k: v for k, v in state.items() if not any(k == s or k.startswith(s + ".") for s in skip)}
    holders = model.state_dict(keep_vars=True)
    clashes = [k for k, v in state.items() if k in holders and v.shape != holders[k].shape]
    if clashes:
        k = clashes[0]
        more = f" (and {len(clashes) - 1} more)" if len(clashes) > 1 else ""
        raise CheckpointError(
            f"{path}: `{k}` is {list(state[k].shape)} there but {list(holders[k].shape)} in this model{more}"
        )
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: cannot be loaded ({exc})") from None
    loaded = {id(holders[k]) for k in state if k in holders}
    missing = sorted(k for k in result.missing_keys if id(holders[k]) not in loaded)
    return missing, list(result.unexpected_keys)
