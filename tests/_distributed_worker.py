"""One rank of the distributed tests (launched by tests/test_distributed.py, gloo on CPU).

Usage: python _distributed_worker.py CASE OUT_DIR (with RANK, WORLD_SIZE, MASTER_ADDR/PORT set).
Writes OUT_DIR/rank{r}.pt: the global values of every parameter (gathered), or the error.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import DTensor, Replicate, Shard, distribute_tensor

import initscope


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(24, 40), nn.GELU(), nn.Linear(40, 40), nn.Tanh(), nn.Linear(40, 12)
    )


def shard(m: nn.Module, mesh, placements: dict[str, list]) -> None:
    for name, param in list(m.named_parameters()):
        module_path, _, leaf = name.rpartition(".")
        owner = m.get_submodule(module_path)
        where = placements.get(name, [Replicate()] * mesh.ndim)
        setattr(owner, leaf, nn.Parameter(distribute_tensor(param.detach(), mesh, where)))


def gathered(m: nn.Module) -> dict[str, torch.Tensor]:
    return {
        n: (p.full_tensor() if isinstance(p, DTensor) else p).detach().clone()
        for n, p in m.named_parameters()
    }


def local(m: nn.Module) -> dict[str, torch.Tensor]:
    return {
        n: (p.to_local() if isinstance(p, DTensor) else p).detach().clone()
        for n, p in m.named_parameters()
    }


def main(case: str, out: Path) -> None:
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    rank, world = dist.get_rank(), dist.get_world_size()
    result: dict = {"case": case}
    m = model()
    if case in ("tp", "fail"):
        mesh = init_device_mesh("cpu", (world,))
        shard(
            m,
            mesh,
            {
                "0.weight": [Shard(0)],
                "2.weight": [Shard(1)],
                "4.weight": [Shard(0)],
                "0.bias": [Shard(0)],
            },
        )
    elif case == "2d":
        mesh = init_device_mesh("cpu", (2, world // 2))
        shard(
            m,
            mesh,
            {
                "0.weight": [Shard(0), Shard(1)],
                "2.weight": [Replicate(), Shard(0)],
                "4.weight": [Shard(1), Replicate()],
            },
        )
    elif case == "fsdp":
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh("cpu", (world,))
        with torch.device("meta"):
            m = model()
        for layer in (m[0], m[2], m[4]):
            fully_shard(layer, mesh=mesh)
        fully_shard(m, mesh=mesh)
    if case == "hang":  # rank 1 never joins the check: rank 0 must give up, not hang
        mesh = init_device_mesh("cpu", (world,))
        shard(m, mesh, {"0.weight": [Shard(0)]})
        if rank == 1:
            time.sleep(8)
            torch.save(result, out / f"rank{rank}.pt")
            return
        import initscope.policy._apply as apply_module

        apply_module.AGREE_TIMEOUT_S = 2.0
    look = local if case == "hang" else gathered  # rank 0 alone: no collective
    before = look(m) if case in ("fail", "hang") else None
    p = initscope.plan(m)
    if case == "fail" and rank == world - 1:
        d = p.to_dict()
        d["entries"][-1]["choices"][0].update(scheme="normal", params={"std": -1.0})
        p = initscope.Plan.from_dict(d)
    try:
        p.apply(m, seed=3, layout_invariant=True, device="cpu" if case == "fsdp" else None)
        result["values"] = gathered(m)
    except Exception as error:  # reported to the test
        result["error"] = f"{type(error).__name__}: {error}"
        result["unchanged"] = before is not None and all(
            torch.equal(before[n], t) for n, t in look(m).items()
        )
    torch.save(result, out / f"rank{rank}.pt")
    if case != "hang":
        dist.barrier()  # no rank tears gloo down while another still talks to it
        dist.destroy_process_group()


def run(main: Callable[[str, Path], None]) -> None:
    """``main(case, out)`` from the command line, then leave without the interpreter's own
    shutdown: gloo's background threads can abort it ("terminate called without an active
    exception") after the result is saved."""
    main(sys.argv[1], Path(sys.argv[2]))
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    run(main)
