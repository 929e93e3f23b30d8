"""Make the figures of docs/lsuv.md.

    python scripts/lsuv_figure.py              # both figures (a minute: the package is slow)
    python scripts/lsuv_figure.py --no-speed   # only the before/after figure (seconds)

* ``docs/figures/lsuv_before_after.png``: ``initscope.compare`` of two ``diagnose`` reports of a
  30-layer ReLU MLP (width 256, batch 512): PyTorch's default init, then the same model after
  ``lsuv``.
* ``docs/figures/lsuv_speed.png``: seconds (CPU time, one thread) of ``initscope.lsuv`` and of the
  ``lsuv`` package on ReLU MLPs of width 256, batch 256, against depth (log-log: slope 1 is
  linear in depth, slope 2 quadratic), with the orthogonal pre-init off and on
  (``benchmarks/bench_lsuv.py`` prints the same comparison as a table).
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from initscope import compare, diagnose, lsuv  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "docs" / "figures"


def mlp(depth: int, width: int, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    layers = [m for _ in range(depth) for m in (nn.Linear(width, width), nn.ReLU())]
    return nn.Sequential(*layers, nn.Linear(width, 10))


def before_after(path: Path) -> None:
    model = mlp(30, 256, seed=0)
    x = torch.randn(512, 256, generator=torch.Generator().manual_seed(0))
    before = diagnose(model, x)
    result = lsuv(model, x, generator=torch.Generator().manual_seed(0))
    after = diagnose(model, x)
    fig = compare([before, after], ["PyTorch default init", "after lsuv"], path=path)
    plt.close(fig)
    print(
        f"{path}: before {before.verdict} (forward log2 {before.forward_log2:+.2f}, backward "
        f"log2 {before.backward_log2:+.2f}); after {after.verdict} (forward log2 "
        f"{after.forward_log2:+.2f}, backward log2 {after.backward_log2:+.2f}); "
        f"lsuv converged: {result.converged}"
    )


def seconds(run, model: nn.Module) -> float:
    m = copy.deepcopy(model)
    t0 = time.process_time()
    run(m)
    return time.process_time() - t0


def speed(path: Path, depths: list[int]) -> None:
    from lsuv import lsuv_with_singlebatch

    x = torch.randn(256, 256, generator=torch.Generator().manual_seed(0))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, orth in zip(axes, (False, True), strict=True):
        ours, pkg = [], []
        for depth in depths:
            model = mlp(depth, 256, seed=depth)[:-1]
            ours.append(seconds(lambda m, o=orth: lsuv(m, x, orthogonal=o), model))
            pkg.append(
                seconds(
                    lambda m, o=orth: lsuv_with_singlebatch(m, x, do_orthonorm=o, verbose=False),
                    model,
                )
            )
        ax.plot(depths, pkg, "o-", color="tab:gray", label="lsuv package 0.3.0")
        ax.plot(depths, ours, "o-", color="tab:red", label="initscope.lsuv")
        for d, a, b in zip(depths, ours, pkg, strict=True):
            ax.annotate(
                f"{b / a:.0f}x",
                (d, a),
                textcoords="offset points",
                xytext=(0, -14),
                ha="center",
                fontsize=8,
                color="tab:red",
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(depths, [str(d) for d in depths])
        ax.minorticks_off()
        ax.margins(x=0.08, y=0.2)
        ax.set_xlabel("depth (Linear + ReLU layers, width 256, batch 256)")
        ax.set_title(f"orthogonal pre-init {'on' if orth else 'off'}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("seconds (CPU time, 1 thread)")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"{path}: depths {depths}")


def main() -> int:
    parser = argparse.ArgumentParser(description="Make the figures of docs/lsuv.md.")
    parser.add_argument("--no-speed", action="store_true", help="skip the timing figure")
    parser.add_argument("--depths", type=int, nargs="+", default=[10, 20, 50, 100])
    args = parser.parse_args()
    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    before_after(OUT / "lsuv_before_after.png")
    if not args.no_speed:
        speed(OUT / "lsuv_speed.png", args.depths)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
