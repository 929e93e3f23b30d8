"""Whole-model initialization against a raw fill of the same size: time and peak memory.

    python benchmarks/bench_model_init.py                      # GPT-2-small shape, 124M parameters
    python benchmarks/bench_model_init.py --model 1b --repeats 1
    python benchmarks/bench_model_init.py --threads 1

Models (built on ``meta`` and materialized with ``to_empty``, so that construction does not
count): ``gpt2-small``, a pre-norm ``nn.TransformerEncoder`` of 12 layers, width 768, 12 heads,
MLP 3072, with a 50257 x 768 token embedding tied to the output head (124M parameters), and
``1b``, the same shape at 24 layers, width 1792 (1.0B parameters).

Each case runs in a fresh subprocess, on a model whose memory is already touched:

* ``raw``: ``torch.empty(N).normal_()`` over the same element count N (memory touched first):
  the peer every ratio is against.
* ``torch``: what the constructors do, ``reset_parameters()`` (and MultiheadAttention's
  ``_reset_parameters()``) on every module.
* ``gpt2`` / ``auto``: ``initscope.initialize(model, preset)``; the plan (one inspection of the
  model) is timed apart from ``Plan.apply``.
* ``invariant``: ``Plan.apply(model, seed=0, layout_invariant=True)`` (preset ``gpt2``): the
  counter-based generator.
* ``meta``: the model on ``meta``, then ``initialize(model, "gpt2", device="cpu", seed=0,
  layout_invariant=True)``: materialization included.

Time: best of ``--repeats`` (wall clock). Peak memory: the process's resident-set high-water
mark (``VmHWM``, reset through ``/proc/self/clear_refs`` just before the step) minus its
resident set before the step, over the model's size in bytes; the largest single parameter is
printed beside it (the target for ``apply``: at most that). Linux only.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import nn

MODELS = {"gpt2-small": (12, 768, 12), "1b": (24, 1792, 14)}
VOCAB = 50257
CASES = ("raw", "torch", "gpt2", "auto", "invariant", "meta")


class GPT(nn.Module):
    """Token embedding, pre-norm transformer encoder, final norm, head tied to the embedding."""

    def __init__(self, layers: int, width: int, heads: int) -> None:
        super().__init__()
        self.wte = nn.Embedding(VOCAB, width)
        block = nn.TransformerEncoderLayer(
            width,
            heads,
            4 * width,
            dropout=0.0,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.blocks = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.ln_f = nn.LayerNorm(width)
        self.head = nn.Linear(width, VOCAB, bias=False)
        self.head.weight = self.wte.weight

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.head(self.ln_f(self.blocks(self.wte(idx))))


def _kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _measure(step, repeats: int) -> tuple[float, int]:
    """Best wall time of ``step()`` and the peak resident memory it added (first run)."""
    best, peak = math.inf, 0
    for i in range(repeats):
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current VmRSS
        base = _kib("VmRSS")
        t0 = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - t0)
        if i == 0:
            peak = _kib("VmHWM") - base
    return best, peak


def _materialized(shape) -> GPT:
    with torch.device("meta"):
        model = GPT(*shape)
    model.to_empty(device="cpu")
    model.head.weight = model.wte.weight  # to_empty unties
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()  # touch the memory
    return model


def worker(case: str, model_name: str, repeats: int) -> dict:
    import initscope

    warnings.simplefilter("ignore")
    shape = MODELS[model_name]
    idx = torch.zeros(1, 4, dtype=torch.long)
    out: dict = {"case": case, "threads": torch.get_num_threads()}
    if case == "meta":

        def step() -> None:
            with torch.device("meta"):
                model = GPT(*shape)
            initscope.initialize(
                model, "gpt2", device="cpu", seed=0, layout_invariant=True, example_input=idx
            )
            out["numel"] = sum(p.numel() for p in model.parameters())
            del model

        out["seconds"], out["peak"] = _measure(step, repeats)
        return out
    if case == "raw":
        with torch.device("meta"):
            model = GPT(*shape)
    else:
        model = _materialized(shape)
    params = list(model.parameters())
    out["numel"] = n = sum(p.numel() for p in params)
    out["model_bytes"] = sum(p.numel() * p.element_size() for p in params)
    out["largest_bytes"] = max(p.numel() * p.element_size() for p in params)
    if case == "raw":
        flat = torch.zeros(n)
        out["seconds"], out["peak"] = _measure(lambda: flat.normal_(), repeats)
    elif case == "torch":

        def step() -> None:
            for m in model.modules():
                reset = getattr(m, "reset_parameters", None) or getattr(
                    m, "_reset_parameters", None
                )
                if reset is not None:
                    reset()

        out["seconds"], out["peak"] = _measure(step, repeats)
    else:
        preset = "auto" if case == "auto" else "gpt2"
        t0 = time.perf_counter()
        plan = initscope.plan(model, preset, example_input=idx)
        out["plan_seconds"] = time.perf_counter() - t0
        kwargs = {"seed": 0, "layout_invariant": True} if case == "invariant" else {}
        g = torch.Generator().manual_seed(0)
        out["seconds"], out["peak"] = _measure(
            lambda: plan.apply(model, None if kwargs else g, **kwargs), repeats
        )
    return out


def run_case(case: str, args) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        case,
        "--model",
        args.model,
        "--repeats",
        str(args.repeats),
        "--threads",
        str(args.threads),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"case {case} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=list(MODELS), default="gpt2-small")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: torch's)")
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--worker", choices=CASES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(worker(args.worker, args.model, args.repeats)))
        return
    rows = {c: run_case(c, args) for c in ("raw", *[c for c in args.cases if c != "raw"])}
    raw = rows["raw"]
    gib = 2.0**30
    print(
        f"model {args.model}: {raw['numel'] / 1e6:.1f}M parameters, "
        f"{raw['model_bytes'] / gib:.2f} GiB, largest parameter "
        f"{raw['largest_bytes'] / gib:.3f} GiB ({raw['largest_bytes'] / raw['model_bytes']:.2f}"
        f" of the model); {raw['threads']} intra-op thread(s), best of {args.repeats}"
    )
    print(f"{'case':<10} {'seconds':>8} {'x raw':>7} {'plan s':>7} {'peak extra / model':>19}")
    for case, r in rows.items():
        plan_s = f"{r['plan_seconds']:.2f}" if "plan_seconds" in r else ""
        print(
            f"{case:<10} {r['seconds']:8.3f} {r['seconds'] / raw['seconds']:7.2f} {plan_s:>7} "
            f"{r['peak'] / raw['model_bytes']:19.3f}"
        )


if __name__ == "__main__":
    main()
