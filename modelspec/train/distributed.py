"""Data-parallel training (`distributed ddp` and `distributed fsdp`) over
processes that torchrun starts.

    mspec train FILE --nproc 2                          # mspec starts torchrun itself
    torchrun --nproc_per_node 2 -m modelspec.cli train FILE

Every process builds the same model from the same seed and trains on its share
of each batch: the regime's `batch` is the global batch, and process r of W
takes every W-th item of it from the r-th (so W processes see the batches one
process would, and only full global batches are used). DDP averages the
gradients, the loss is divided by the count of the whole global window, so W
processes compute the step one process would, up to float rounding. Every
process evaluates the whole validation split (same weights, same results, same
early-stopping decisions); only process 0 writes the run folder, the
checkpoints, metrics.jsonl and the progress, and the run folder's name is
broadcast from it so all agree. All processes use the same seed, so their RNG
states stay equal (same operations on same-shaped batches): the state a
checkpoint stores is every process's, and resume is exact.

`fsdp` trains the same steps with each process holding a shard of every
parameter, gradient and optimizer state (torch's FSDP2, `fully_shard`): each
repeat iteration of the model (a transformer layer, a ResNet stage's block)
is its own unit whose parameters are gathered just before its forward and
backward and freed after, and the root holds the rest. That is what makes a
model fit whose weights and optimizer state do not fit one device. A
checkpoint holds the full tensors, gathered to process 0 (the same files as
one process writes, which `mspec generate` and `init from` read; the
optimizer's state names the parameters by their dotted names); resuming,
every process reads the files and keeps its shard.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass
from typing import Any

import torch


class DistributedError(Exception):
    """A launch that cannot run as the regime declares; the message says why."""


@dataclass
class Context:
    """This process's place among the processes of a run (one process: rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    strategy: str | None = None  # "ddp" or "fsdp" when active

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def broadcast(self, value: Any) -> Any:
        """Process 0's `value`, on every process."""
        if not self.active:
            return value
        box = [value if self.is_main else None]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def all_sum(self, values: list[float]) -> list[float]:
        """The sums over all processes of `values` (float64)."""
        if not self.active:
            return values
        tensor = torch.tensor(values, dtype=torch.float64)
        torch.distributed.all_reduce(tensor)
        return tensor.tolist()

    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()

    def shutdown(self) -> None:
        if self.active and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def launched_world() -> int:
    """How many processes torchrun started (1 when it did not start this one)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def setup(strategy: str | None, device: torch.device) -> tuple[Context, str | None]:
    """Join the process group torchrun set up; (context, a note for the user or None).
    Raises DistributedError for a launch the regime does not declare."""
    world = launched_world()
    if strategy is None:
        if world > 1:
            raise DistributedError(
                f"this process is one of {world} that torchrun started, but the regime declares no `distributed` "
                "setting: add `distributed ddp` to train data-parallel (each process would otherwise run alone "
                "and write its own run)"
            )
        return Context(), None
    if world == 1:
        return Context(), (
            f"`distributed {strategy}` in one process: start several with `mspec train --nproc N` (or torchrun)"
        )
    if strategy not in ("ddp", "fsdp"):
        raise DistributedError(f"`distributed {strategy}` has no runtime in `mspec train`: use ddp or fsdp")
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend=backend)
    return Context(rank=rank, world=world, local_rank=local_rank, strategy=strategy), None


# ---- fsdp ----------------------------------------------------------------------------------------


def shard(model: torch.nn.Module) -> torch.nn.Module:
    """`model` sharded in place across the processes (FSDP2): each repeat iteration that has
    parameters is a unit of its own, the root takes the rest. The generated forward never
    overwrites a block's or a repeat's output in place (backends/modelspec_torch/inplace.py), which
    FSDP needs of its units' outputs."""
    from torch.distributed.fsdp import fully_shard

    # FSDP warns when a unit returns a view (a linear's output over [B, T, d] is one): an in-place
    # op on it would bypass its backward hook, and nothing here writes into a unit's output
    warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module .* returned a view tensor")
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList):
            for iteration in module:
                if any(True for _ in iteration.parameters()):
                    fully_shard(iteration)
    fully_shard(model)
    return model


@contextlib.contextmanager
def gradient_sync_skipped(model: torch.nn.Module):
    """FSDP's `no_sync`: backward passes accumulate unsharded gradients, reduced at the next
    backward outside this context."""
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def _full_options():
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def full_weights(model: torch.nn.Module, aliases: dict[str, str]) -> dict[str, torch.Tensor]:
    """Every process calls this; process 0 gets the full tensors on the CPU (others: {}). A tied
    parameter's names (`aliases`: name -> the name it shares its tensor with) get one tensor, as
    in an unsharded model's state_dict, so that the files are the ones one process writes."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    weights = get_model_state_dict(model, options=_full_options())
    for name, first in aliases.items():
        if name in weights:
            weights[name] = weights[first]
    return weights


def full_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Every process calls this; process 0 gets the optimizer's full state (parameters named by
    their dotted names), the others {}."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=_full_options())


def load_full_state(
    model: torch.nn.Module,
    weights: dict[str, torch.Tensor],
    aliases: dict[str, str],
    optimizer: torch.optim.Optimizer | None = None,
    optimizer_state: dict[str, Any] | None = None,
) -> None:
    """Every process: keep its shard of the full `weights` (and of the optimizer's full state)."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    weights = dict(weights)
    for name, first in aliases.items():  # a file holds one name of a tied parameter, either one
        if name in weights:
            weights.setdefault(first, weights[name])
        elif first in weights:
            weights[name] = weights[first]
    options = StateDictOptions(full_state_dict=True)
    set_model_state_dict(model, weights, options=options)
    if optimizer is not None and optimizer_state is not None:
        set_optimizer_state_dict(model, optimizer, optimizer_state, options=options)


def tied_names(model: torch.nn.Module) -> dict[str, str]:
    """name -> the first name of the same tensor, for the parameters and buffers that a model
    holds under several names (tied embeddings), in state_dict order."""
    first: dict[int, str] = {}
    aliases = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) in first:
            aliases[name] = first[id(tensor)]
        else:
            first[id(tensor)] = name
    return aliases


def local(tensor: torch.Tensor) -> torch.Tensor:
    """This process's part of `tensor` (its shard under fsdp; the tensor itself otherwise)."""
    to_local = getattr(tensor, "to_local", None)
    return to_local() if to_local is not None else tensor


def whole(tensor: torch.Tensor) -> torch.Tensor:
    """The whole of a tensor that may be sharded (a clip_grad norm under fsdp)."""
    full_tensor = getattr(tensor, "full_tensor", None)
    return full_tensor() if full_tensor is not None else tensor


def launch_command(nproc: int, args: list[str]) -> list[str]:
    """The torchrun command that runs `mspec train ARGS` in `nproc` processes on this machine."""
    import sys

    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # a rendezvous on this machine, on a free port
        f"--nproc_per_node={nproc}",
        "-m",
        "modelspec.cli",
        "train",
        *args,
    ]
