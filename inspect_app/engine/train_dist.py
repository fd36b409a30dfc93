"""The processes of a fine-tuning run: one plain process, or torchrun's group (DDP over NCCL or gloo)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from inspect_app.config.recipes import TrainConfig
from inspect_app.engine.device import resolve_device


def dist_env() -> tuple[int, int, int]:
    """(world size, rank, local rank) from torchrun's environment; (1, 0, 0) for a plain process."""
    return (
        int(os.environ.get("WORLD_SIZE", "1")),
        int(os.environ.get("RANK", "0")),
        int(os.environ.get("LOCAL_RANK", "0")),
    )


@dataclass(frozen=True)
class RunProcess:
    """This process's place in the run: world size, ranks, device, and whether it started the process group."""

    world: int
    rank: int
    local_rank: int
    device: torch.device
    owns_group: bool

    @property
    def is_main(self) -> bool:
        """Rank 0, the only process that writes files."""
        return self.rank == 0


def join_processes(config: TrainConfig) -> RunProcess:
    """Join torchrun's process group when there is one (NCCL on CUDA, gloo on CPU) and pick this process's device."""
    world, rank, local_rank = dist_env()
    owns_group = False
    device = resolve_device(config.device)
    if world > 1:
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
            owns_group = True
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
    return RunProcess(world, rank, local_rank, device, owns_group)


def leave_processes(proc: RunProcess) -> None:
    """Wait for every process to finish, then end the group if this process started it."""
    if proc.world > 1:
        dist.barrier()
        if proc.owns_group:
            dist.destroy_process_group()
