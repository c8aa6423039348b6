"""Data-parallel training (`distributed ddp`) over processes that torchrun starts.

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

`fsdp` is refused: see `setup`.
"""

from __future__ import annotations

import os
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
    Raises DistributedError for a launch the regime does not declare, and for fsdp."""
    world = launched_world()
    if strategy == "fsdp":
        raise DistributedError(
            "`distributed fsdp` is not supported by `mspec train`: it shards parameters across processes, "
            "which only pays off for models too large for one device, and mspec implements data-parallel "
            "training with `distributed ddp` only; use `distributed ddp`"
        )
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
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend=backend)
    return Context(rank=rank, world=world, local_rank=local_rank), None


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
