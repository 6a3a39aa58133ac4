"""Data-parallel training and sharded evaluation under ``torchrun`` (docs/design.md "Scale").

Training: every rank builds the same model from the same seed, draws its share of each global batch
(:class:`bench.data.types.TrainData` with ``rank``/``world``), and every optimiser the method names in
``parts()`` averages its gradients over the ranks before it steps (:func:`average_gradients`): the
synchronous data parallelism of PyTorch's DDP, for any number of networks and optimisers (critic steps,
alternating batches, WGAN-GP), without the method knowing. Losses are averaged for the log; rank 0 writes
checkpoints. Evaluation: every rank scores the samples whose index ``i % world_size == rank`` into its own
metrics file; rows are keyed by sample id, so a run resumed with another world size skips exactly the samples
already done. Without ``WORLD_SIZE`` in the environment this is a no-op single process.
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

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """Each value averaged over the ranks (the global batch's loss when shards are equal)."""
        if self.world == 1 or not values:
            return values
        import torch
        import torch.distributed as dist

        keys = sorted(values)
        t = torch.tensor([values[k] for k in keys], dtype=torch.float64)
        dist.all_reduce(t)
        return dict(zip(keys, (t / self.world).tolist(), strict=True))

    def any(self, flag: bool) -> bool:
        """Whether any rank says yes (e.g. its time budget ran out), so all ranks stop at the same step."""
        if self.world == 1:
            return flag
        import torch
        import torch.distributed as dist

        t = torch.tensor([int(flag)])
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def shutdown(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()


def global_draw(draw, n: int):
    """This rank's ``n`` rows of ``draw(n * world)``: a per-sample random draw made for the whole global batch and
    sliced, so each sample gets the number a single process gives it (every rank's generator is in the same state).
    Shared losses use it (WGAN-GP's interpolation weights); single process: ``draw(n)``."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return draw(n)
    rank = dist.get_rank()
    return draw(n * dist.get_world_size())[rank * n : (rank + 1) * n]


def init(device) -> Dist:
    value = os.environ.get("WORLD_SIZE", "1")
    if not value.strip().isdigit() or int(value) < 1:
        raise ValueError(
            f"WORLD_SIZE={value!r}: the number of processes must be a whole number of at least 1; launch several "
            "with torchrun, or unset WORLD_SIZE to run one"
        )
    world = int(value)
    if world == 1:
        return Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        # Other ranks wait at a barrier while rank 0 trains: allow a long wait.
        dist.init_process_group(backend, timeout=timedelta(hours=48))
    return Dist(rank=dist.get_rank(), world=dist.get_world_size())


def average_gradients(optimizers: list, world: int) -> list:
    """Make each optimiser average its parameters' gradients over the ranks before every step (one flat
    all-reduce per step). Returns the hook handles."""
    import torch
    import torch.distributed as dist

    def hook(optimizer, args, kwargs) -> None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= world
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()

    return [opt.register_step_pre_hook(hook) for opt in optimizers]
