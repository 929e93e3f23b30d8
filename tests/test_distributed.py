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
from torch import nn

import initscope

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch without distributed")

WORKER = Path(__file__).with_name("_distributed_worker.py")
SRC = Path(__file__).resolve().parents[1] / "src"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(
    case: str, world: int, out: Path, timeout: float = 120.0, worker: Path = WORKER
) -> list[dict]:
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
            [sys.executable, str(worker), case, str(out)],
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


# ----------------------------------------------------------------------------- diagnose

DIAGNOSE_WORKER = Path(__file__).with_name("_diagnose_worker.py")
STDS = ("in_std", "out_std", "grad_out_std", "weight_std", "weight_grad_std")


def whole_batch_report() -> dict:
    sys.path.insert(0, str(WORKER.parent))
    try:
        from _diagnose_worker import batch, model, mse
    finally:
        sys.path.pop(0)
    x, y = batch()
    return initscope.diagnose(model(), x, loss_fn=mse, target=y).to_dict()


def check_whole_batch(report: dict, ref: dict) -> None:
    assert report["verdict"] == ref["verdict"]
    assert len(report["layers"]) == len(ref["layers"])
    for got, want in zip(report["layers"], ref["layers"], strict=True):
        for stat in STDS:
            if want[stat] is None:
                assert got[stat] is None, (want["path"], stat)
            else:
                assert got[stat] == pytest.approx(want[stat], rel=1e-5), (want["path"], stat)
        for stat in ("dead_fraction", "saturated_fraction"):
            assert got[stat] == pytest.approx(want[stat], abs=1e-12), (want["path"], stat)
        assert got["identical_groups"] == want["identical_groups"]


@pytest.mark.parametrize("case", ["ddp", "fsdp"])
def test_diagnose_on_two_halves_reports_the_whole_batch(case, tmp_path) -> None:
    results = run_ranks(case, 2, tmp_path, worker=DIAGNOSE_WORKER)
    ref = whole_batch_report()
    assert ref["layers"][1]["dead_fraction"] == 0.25  # ReLU units dead on the whole batch
    for r in results:
        assert "error" not in r, r.get("error")
        assert r["unchanged"]
        check_whole_batch(r["report"], ref)
    if case == "ddp":  # the local reports differ: a unit dead on one half lives on the other
        assert results[0]["local"]["layers"][1]["dead_fraction"] > 0.25
        assert results[0]["local"]["layers"][0]["out_std"] != pytest.approx(
            ref["layers"][0]["out_std"], rel=1e-3
        )


def test_diagnose_nan_on_one_rank_raises_on_every_rank(tmp_path) -> None:
    for r in run_ranks("nan", 2, tmp_path, worker=DIAGNOSE_WORKER):
        assert r["error"] == "ValueError: inputs: the batch contains NaN or inf"
        assert r["unchanged"]


def test_diagnose_failure_on_one_rank_raises_on_every_rank(tmp_path) -> None:
    results = run_ranks("fail", 2, tmp_path, worker=DIAGNOSE_WORKER)
    assert "expects input of shape (*, 24)" in results[1]["error"]
    assert (
        results[0]["error"] == "RuntimeError: diagnose failed on rank(s) [1]; their errors say why"
    )
    assert all(r["unchanged"] for r in results)


def test_diagnose_reduce_without_a_process_group_changes_nothing() -> None:
    m = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    x = torch.randn(16, 6, generator=torch.Generator().manual_seed(0))

    def report(**kw) -> str:
        return initscope.diagnose(m, x, generator=torch.Generator().manual_seed(1), **kw).to_json()

    assert not dist.is_initialized()
    assert report() == report(reduce=False)
    with pytest.raises(TypeError, match="reduce: expected a bool"):
        initscope.diagnose(m, x, reduce=1)
