"""Time initscope.lsuv against the ``lsuv`` package (0.3.0) on deep ReLU MLPs.

    python benchmarks/bench_lsuv.py                 # 20-, 50-, 100-layer MLPs, width 256, batch 256
    python benchmarks/bench_lsuv.py --depths 10 20 --repeats 1

Both sides start from the same model (torch's default Linear init) and the same batch, with the
same target (std 1, tolerance 0.1, at most 10 rescalings per layer), in eval mode on the CPU:

* orthogonal off: ``lsuv(model, x, orthogonal=False)`` vs the package's
  ``lsuv_with_singlebatch(model, x, do_orthonorm=False, verbose=False)``: the passes themselves.
* orthogonal on: ``lsuv(model, x, orthogonal=True)`` vs ``do_orthonorm=True``: one QR
  factorization per layer on both sides (the package also zeroes the biases; we keep them).

The package re-runs the whole network for every layer and every iteration (quadratic in
depth); initscope runs it once and re-runs single layers (linear in depth). Each time is the
best of ``--repeats`` runs on a fresh copy of the model, measured as this process's CPU time
(``--clock cpu``, the default: other jobs on a shared machine do not leak into it; with one
intra-op thread it equals the wall time of an idle machine) or as wall time (``--clock wall``).
One intra-op thread by default (``--threads`` to change). After each run a plain forward pass
measures every Linear output's std, to check that both reach the target.
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable

import torch
from torch import nn

from initscope.calibration import lsuv

TOL = 0.1
REQUIRED = {False: 20.0, True: 8.0}  # speed-up required at 50 layers, orthogonal off / on


def make_mlp(depth: int, width: int) -> nn.Sequential:
    torch.manual_seed(depth)
    return nn.Sequential(*[m for _ in range(depth) for m in (nn.Linear(width, width), nn.ReLU())])


def layer_stds(model: nn.Module, x: torch.Tensor) -> list[float]:
    stds: list[float] = []
    hooks = [
        m.register_forward_hook(lambda mod, inp, out: stds.append(out.double().std().item()))
        for m in model.modules()
        if isinstance(m, nn.Linear)
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return stds


def best_time(run: Callable[[nn.Module], object], model: nn.Module, repeats: int, clock):
    best, result = float("inf"), None
    for _ in range(repeats):
        m = copy.deepcopy(model)
        t0 = clock()
        run(m)
        best = min(best, clock() - t0)
        result = m
    return best, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", type=int, nargs="+", default=[20, 50, 100])
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    args = parser.parse_args()
    clock = time.process_time if args.clock == "cpu" else time.perf_counter

    from lsuv import lsuv_with_singlebatch

    torch.set_num_threads(args.threads)
    x = torch.randn(args.batch, args.width, generator=torch.Generator().manual_seed(0))
    print(
        f"LSUV on ReLU MLPs, width {args.width}, batch {args.batch}, best of {args.repeats}, "
        f"{args.clock} time, {args.threads} thread(s), torch {torch.__version__}"
    )
    header = (
        f"{'depth':>5}  {'orthogonal':>10}  {'initscope s':>11}  {'lsuv pkg s':>10}  "
        f"{'speed-up':>8}  {'initscope within tol':>20}  {'lsuv pkg within tol':>19}"
    )
    print(header)
    print("-" * len(header))
    ratios: dict[tuple[int, bool], float] = {}
    for depth in args.depths:
        model = make_mlp(depth, args.width)
        for orth in (False, True):
            ours_t, ours_m = best_time(
                lambda m, orth=orth: lsuv(m, x, orthogonal=orth), model, args.repeats, clock
            )
            pkg_t, pkg_m = best_time(
                lambda m, orth=orth: lsuv_with_singlebatch(m, x, do_orthonorm=orth, verbose=False),
                model,
                args.repeats,
                clock,
            )
            ok = []
            for m in (ours_m, pkg_m):
                stds = layer_stds(m, x)
                worst = max(abs(s - 1.0) for s in stds)
                ok.append(
                    f"{sum(abs(s - 1.0) <= TOL for s in stds)}/{len(stds)} (max |d| {worst:.3f})"
                )
            ratios[depth, orth] = pkg_t / ours_t
            print(
                f"{depth:>5}  {'on' if orth else 'off':>10}  {ours_t:>11.4f}  {pkg_t:>10.3f}  "
                f"{pkg_t / ours_t:>7.1f}x  {ok[0]:>20}  {ok[1]:>19}"
            )
    print()
    for orth in (False, True):
        series = [f"{d}: {ratios[d, orth]:.1f}x" for d in args.depths]
        line = f"orthogonal {'on ' if orth else 'off'}: speed-up by depth  " + ", ".join(series)
        if 50 in args.depths:
            need = REQUIRED[orth]
            verdict = "ok" if ratios[50, orth] >= need else "BELOW"
            line += f"   (required at 50 layers: >= {need:g}x: {verdict})"
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
