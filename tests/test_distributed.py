"""Sharded parameters (DTensor, FSDP2) on torch.distributed with gloo on CPU, spawned ranks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

import initscope

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch without distributed")

WORKER = Path(__file__).with_name("_distributed_worker.py")
SRC = Path(__file__).resolve().parents[1] / "src"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(case: str, world: int, out: Path, timeout: float = 120.0) -> list[dict]:
    env = {
        **os.environ,
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
        "WORLD_SIZE": str(world),
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), case, str(out)],
            env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for r in range(world)
    ]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=timeout)[0].decode(errors="replace"))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert all(p.returncode == 0 for p in procs), "\n".join(logs)[-4000:]
    return [torch.load(out / f"rank{r}.pt") for r in range(world)]


def reference() -> dict[str, torch.Tensor]:
    sys.path.insert(0, str(WORKER.parent))
    try:
        from _distributed_worker import model
    finally:
        sys.path.pop(0)
    m = model()
    initscope.initialize(m, seed=3, layout_invariant=True)
    return {n: p.detach() for n, p in m.named_parameters()}


def check_same_as_one_process(results: list[dict]) -> None:
    ref = reference()
    for r in results:
        assert "error" not in r, r.get("error")
        assert r["values"].keys() == ref.keys()
        for name, value in r["values"].items():
            assert torch.equal(value, ref[name]), name


@pytest.mark.parametrize("world", [2, pytest.param(4, marks=pytest.mark.slow)])
def test_tensor_parallel_shards_hold_the_global_values(world, tmp_path) -> None:
    check_same_as_one_process(run_ranks("tp", world, tmp_path))


@pytest.mark.slow
def test_two_dimensional_mesh(tmp_path) -> None:
    check_same_as_one_process(run_ranks("2d", 4, tmp_path))


def test_fsdp2_meta_model(tmp_path) -> None:
    check_same_as_one_process(run_ranks("fsdp", 2, tmp_path))


def test_a_failure_on_one_rank_raises_on_every_rank(tmp_path) -> None:
    results = run_ranks("fail", 2, tmp_path)
    assert "std must be >= 0" in results[1]["error"]
    assert "checks failed on rank(s) [1]" in results[0]["error"]
    assert all(r["unchanged"] for r in results)


def test_a_rank_that_never_arrives_makes_the_others_raise(tmp_path) -> None:
    results = run_ranks("hang", 2, tmp_path)
    assert "did not hear from every rank within 2 s" in results[0]["error"]
    assert results[0]["unchanged"]
