"""Sharded evaluation under ``torchrun`` (docs/design.md "Scale").

Rank 0 owns the run folder, the manifest and training; every rank then evaluates the samples whose
index ``i % world_size == rank`` and appends to its own metrics file. Rows are keyed by sample id,
so a run resumed with another world size skips exactly the samples already done. Without
``WORLD_SIZE`` in the environment this is a no-op single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if self.world == 1:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if self.world == 1:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def shutdown(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()


def init(device) -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        # Other ranks wait at a barrier while rank 0 trains: allow a long wait.
        dist.init_process_group(backend, timeout=timedelta(hours=48))
    return Dist(rank=dist.get_rank(), world=dist.get_world_size())
