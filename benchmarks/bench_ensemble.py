"""Training 8 pricing networks: one vectorized ensemble against a Python loop over 8 models.

    python benchmarks/bench_ensemble.py [--steps 30] [--repeats 5] [--threads N]

The textbook pricing network (4 inputs, 4 x (Linear + ReLU), a Linear head, softplus output) at
width 128 (its default) and 64 (the demo's), 8 members, Adam (lr 2e-3), MSE on Black-Scholes
prices, batch 256, the same batches for both. Vectorized: ``initscope.ensemble`` (one
``functional_call`` under ``torch.vmap`` per step, one Adam over the stacked parameters).
Peer: the same 8 members as 8 ordinary modules, each with its own forward, backward and Adam step
in a Python loop. Both start from the same values; the script checks they end at the same
values. The two are timed alternately; the ratio of the medians is the result, for training
(``--steps`` steps) and for a forward pass alone (no grad). Target: vectorized >= 3x faster.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from initscope import ensemble
from initscope.experiments.pricing import RANGES, PricingNetwork, sample_options

MEMBERS = 8


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench(hidden: int, steps: int, repeats: int, batch: int) -> tuple[float, float]:
    g = torch.Generator().manual_seed(0)
    x, y = sample_options(4096, g)
    x = ((x - x.mean(0)) / x.std(0)).float()
    y = y.float()
    batches = [torch.randint(0, len(x), (batch,), generator=g) for _ in range(steps)]

    def fresh() -> tuple[nn.Module, list[nn.Module]]:
        ens = ensemble(lambda: PricingNetwork(len(RANGES), hidden_dim=hidden), MEMBERS, seed=0)
        return ens, ens.members()

    def train_vectorized(ens: nn.Module) -> None:
        opt = torch.optim.Adam(ens.parameters(), lr=2e-3)
        for idx in batches:
            out = ens(x[idx])
            loss = F.mse_loss(out, y[idx].expand(MEMBERS, -1, -1), reduction="none")
            opt.zero_grad(set_to_none=True)
            loss.mean(dim=(1, 2)).sum().backward()
            opt.step()

    def train_loop(models: list[nn.Module]) -> None:
        opts = [torch.optim.Adam(m.parameters(), lr=2e-3) for m in models]
        for idx in batches:
            for m, opt in zip(models, opts, strict=True):
                loss = F.mse_loss(m(x[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

    ens, models = fresh()
    train_vectorized(ens)
    train_loop(models)
    deviation = max(
        (ens.stacked_parameters()[name][k] - p).abs().max().item()
        for k, m in enumerate(models)
        for name, p in m.named_parameters()
    )
    t_vec, t_loop = [], []
    for _ in range(repeats):
        ens, models = fresh()
        t_vec.append(timed(lambda ens=ens: train_vectorized(ens)))
        t_loop.append(timed(lambda models=models: train_loop(models)))
    a, b = statistics.median(t_vec), statistics.median(t_loop)

    xb = x[batches[0]]
    f_vec, f_loop = [], []
    with torch.no_grad():
        for _ in range(5 * repeats):
            f_vec.append(timed(lambda: ens(xb)))
            f_loop.append(timed(lambda: torch.stack([m(xb) for m in models])))
    fa, fb = statistics.median(f_vec), statistics.median(f_loop)
    print(
        f"width {hidden:>3}, {MEMBERS} members, batch {batch}, {steps} steps: "
        f"train vectorized {a * 1e3:7.1f} ms, loop {b * 1e3:7.1f} ms, ratio {b / a:4.2f}x "
        f"({'ok' if b / a >= 3 else 'below'} target 3x); forward {fa * 1e3:5.2f} ms vs "
        f"{fb * 1e3:5.2f} ms, ratio {fb / fa:4.2f}x; same result: max |diff| {deviation:.1e}"
    )
    return b / a, fb / fa


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, medians of "
        f"{args.repeats} (training) and {5 * args.repeats} (forward)"
    )
    for hidden in (128, 64):
        bench(hidden, args.steps, args.repeats, args.batch)


if __name__ == "__main__":
    main()
