"""Data-parallel training with PyTorch DistributedDataParallel, started by torchrun.

    torchrun --nproc_per_node=N -m seq2seq.train +experiment=gru ...

starts N copies of the entry point; torchrun tells each its place through the
environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT). Every
process builds the same model from the same seed, reads its own shard of each
step's batches, and DDP averages the gradients during `backward()` (gloo on CPUs,
NCCL on GPUs). Only rank 0 validates, logs and writes checkpoints; it broadcasts
what it measured, so the learning-rate schedule and early stopping decide the
same on every rank. A plain `python -m seq2seq.train` is the one-process case of
the same code: every helper here is then a no-op.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

B = TypeVar("B")  # a batch: whatever the epoch's batching yields


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in the job: rank `rank` of `world_size` (one process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0  # the rank on this machine: picks the GPU

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, validates and writes checkpoints."""
        return self.rank == 0

    # ------------------------------------------------------------ collectives
    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank (any picklable value)."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order, on every rank."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        """Wait until every rank gets here."""
        if self.enabled:
            dist.barrier()

    def sum(self, *values: float) -> tuple[float, ...]:
        """Element-wise sums over ranks of a few numbers (token counts, losses)."""
        return self._all_reduce(values, dist.ReduceOp.SUM)

    def max(self, *values: float) -> tuple[float, ...]:
        """Element-wise maxima over ranks: a flag set on any rank is set on all."""
        return self._all_reduce(values, dist.ReduceOp.MAX)

    def _all_reduce(self, values: tuple[float, ...], op: Any) -> tuple[float, ...]:
        if not self.enabled:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=self._comm_device())
        dist.all_reduce(tensor, op=op)
        return tuple(tensor.tolist())

    def _comm_device(self) -> torch.device:
        return torch.device("cuda", self.local_rank) if dist.get_backend() == "nccl" else torch.device("cpu")


def setup(device: torch.device) -> DistributedContext:
    """Read torchrun's environment and join the process group (gloo on CPU, NCCL on CUDA)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext()
    ctx = DistributedContext(
        rank=int(os.environ["RANK"]), world_size=world_size, local_rank=int(os.environ.get("LOCAL_RANK", "0"))
    )
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(ctx.local_rank)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return ctx


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shard(batches: Sequence[B], world_size: int) -> list[list[B]]:
    """Group an epoch's batches into global steps: step i gives rank r `batches[i * world_size + r]`.

    Every rank takes the same number of steps; the last `len(batches) % world_size` batches wait
    for the next epoch's shuffle.
    """
    steps = len(batches) // world_size
    return [list(batches[i * world_size : (i + 1) * world_size]) for i in range(steps)]
