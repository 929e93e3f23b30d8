"""One rank of the distributed diagnose tests (launched by tests/test_distributed.py, gloo, CPU).

Usage: python _diagnose_worker.py CASE OUT_DIR (with RANK, WORLD_SIZE, MASTER_ADDR/PORT set).
Each rank diagnoses its slice of one global batch; writes OUT_DIR/rank{r}.pt: the report as a
dict (``to_dict``), the local report (``reduce=False``), or the error.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from _distributed_worker import run
from torch import nn

import initscope

BATCH = 64


def model() -> nn.Module:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(24, 40), nn.ReLU(), nn.Linear(40, 40), nn.Tanh(), nn.Linear(40, 12))
    with torch.no_grad():
        m[0].bias[:20] = -4.0  # units that fire rarely: dead on one half of the batch, not both
    return m


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(BATCH, 24, generator=g) * 3.0
    return x, torch.randn(BATCH, 12, generator=g)


def mse(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return nn.functional.mse_loss(output, target)


def main(case: str, out: Path) -> None:
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    rank, world = dist.get_rank(), dist.get_world_size()
    x, y = batch()
    part = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
    x, y = x[part].clone(), y[part]
    m = model()
    if case == "nan" and rank == world - 1:
        x[0, 0] = float("nan")
    if case == "fail" and rank == world - 1:
        x = x[:, :20]  # the first Linear cannot take it
    if case == "fsdp":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh("cpu", (world,))
        for i in (0, 2, 4):
            fully_shard(m[i], mesh=mesh)
        fully_shard(m, mesh=mesh)
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    result: dict = {"case": case}
    try:
        result["report"] = initscope.diagnose(m, x, loss_fn=mse, target=y).to_dict()
        if case == "ddp":
            result["local"] = initscope.diagnose(
                m, x, loss_fn=mse, target=y, reduce=False
            ).to_dict()
    except Exception as error:  # reported to the test
        result["error"] = f"{type(error).__name__}: {error}"
    result["unchanged"] = all(
        torch.equal(before[n], p) and p.grad is None for n, p in m.named_parameters()
    )
    torch.save(result, out / f"rank{rank}.pt")
    dist.barrier()  # no rank tears gloo down while another still talks to it
    dist.destroy_process_group()


if __name__ == "__main__":
    run(main)
