"""Figures of the warm-start and transfer experiments (matplotlib is imported only here and in
:mod:`initscope.experiments.figures`, which registers them)."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

WARM_COLORS = {
    "fresh": "tab:gray",
    "warm start": "tab:red",
    "warm start + probe head": "tab:purple",
    "shrink-perturb": "tab:blue",
    "widened warm start": "tab:green",
}
HEAD_COLORS = {
    "default": "tab:gray",
    "zero": "tab:orange",
    "calibrated": "tab:green",
    "probe": "tab:blue",
}


def _figure(ncols: int, width: float = 5.2, height: float = 3.9) -> tuple[Figure, list[Axes]]:
    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    return fig, list(fig.subplots(1, ncols))


def _band(ax: Axes, x: np.ndarray, runs: np.ndarray, color: str, label: str) -> None:
    """Geometric mean over seeds (rows) as a line, min..max as a band, on a log axis."""
    ax.semilogy(x, np.exp(np.log(runs).mean(0)), color=color, lw=2, label=label)
    if len(runs) > 1:
        ax.fill_between(x, runs.min(0), runs.max(0), color=color, alpha=0.15, lw=0)


def warm_start(r: Any) -> Figure:
    fig, axes = _figure(3)
    for v in r.variants:
        _band(axes[0], r.eval_steps, r.new_mse[v], WARM_COLORS[v], v)
        _band(axes[1], r.eval_steps, r.old_mse[v], WARM_COLORS[v], v)
    axes[0].axhline(r.new_target_var, color="k", ls=":", lw=1, label="predicting the mean")
    axes[0].set_title(f"new regime (vol 40-80%, r 5-10%), {r.seeds} seeds")
    axes[1].set_title("old regime (vol 10-50%): forgetting")
    for ax in axes[:2]:
        ax.set_xlabel("Adam steps on the new regime")
        ax.set_ylabel("test MSE of C / K")
        ax.legend(fontsize=7)
    ends = [np.exp(np.log(r.new_mse[v][:, -1]).mean()) for v in r.variants]
    olds = [np.exp(np.log(r.old_mse[v][:, -1]).mean()) for v in r.variants]
    for v, e, o in zip(r.variants, ends, olds, strict=True):
        axes[2].loglog(e, o, "o", ms=9, color=WARM_COLORS[v], label=v)
    axes[2].set_xlabel(f"new-regime MSE after {r.steps} steps")
    axes[2].set_ylabel("old-regime MSE after")
    axes[2].set_title("adaptation vs forgetting (lower left is better)")
    axes[2].legend(fontsize=7)
    return fig


def transfer(r: Any) -> Figure:
    fig, axes = _figure(3)
    for ax, product in zip(axes[:2], r.products, strict=True):
        for h in r.heads:
            _band(ax, r.eval_steps, r.mse[f"{product}/{h}"], HEAD_COLORS[h], h)
        ax.axhline(r.target_var[product], color="k", ls=":", lw=1, label="predicting the mean")
        ax.set_title(f"{product}: {r.n_samples} samples, fine-tuning all layers")
        ax.set_xlabel("Adam steps")
        ax.set_ylabel("test MSE")
        ax.legend(fontsize=7)
    width = 0.8 / len(r.heads)
    x = np.arange(len(r.products))
    for i, h in enumerate(r.heads):
        means = [float(np.mean(r.cka[f"{p}/{h}"])) for p in r.products]
        axes[2].bar(x + (i - (len(r.heads) - 1) / 2) * width, means, width,
                    color=HEAD_COLORS[h], label=h)  # fmt: skip
    axes[2].set_xticks(x, r.products)
    axes[2].set_ylim(0, 1)
    axes[2].set_ylabel("linear CKA, backbone features before vs after")
    axes[2].set_title("how far the features moved (1 = not at all)")
    axes[2].legend(fontsize=7)
    return fig
