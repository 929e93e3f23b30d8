"""The ensembles experiment's figure (matplotlib is imported only here and in ``_figures``)."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

_COLORS = ("tab:gray", "tab:red", "tab:blue", "tab:cyan", "tab:orange")


def draw_ensembles(r: Any) -> Figure:
    """Four panels: training loss; test MSE of the ensemble mean vs the average member; the
    loss along the straight line between members; interval coverage in and out of range."""
    fig = Figure(figsize=(4.8 * 4, 4.1), layout="constrained")
    axes = list(fig.subplots(1, 4))
    colors = dict(zip(r.variants, _COLORS, strict=False))
    x = np.arange(len(r.variants))
    short = [v.split(" (")[0] for v in r.variants]

    ax = axes[0]
    for v in r.variants:
        ax.semilogy(r.eval_steps, r.train_loss[v], color=colors[v], lw=2, label=v)
    ax.set_title(f"training loss ({r.members} members, vectorized, Adam)")
    ax.set_xlabel("step")
    ax.set_ylabel("mean member MSE (batch)")
    ax.legend(fontsize=7)

    ax = axes[1]
    ens = [r.ensemble_mse[v] for v in r.variants]
    mem = [r.member_mse[v] for v in r.variants]
    ax.bar(x - 0.2, mem, 0.4, color="lightgray", edgecolor="k", label="average member")
    ax.bar(x + 0.2, ens, 0.4, color=[colors[v] for v in r.variants], label="ensemble mean")
    ax.set_yscale("log")
    ax.set_xticks(x, short, rotation=20, fontsize=8)
    ax.set_ylabel("test MSE of C / K (in range)")
    ax.set_title("ensemble mean vs average member")
    for i, v in enumerate(r.variants):
        gain = r.ambiguity[v] / r.member_mse[v]
        ax.annotate(f"-{gain:.0%}", (i + 0.2, ens[i]), ha="center", va="bottom", fontsize=7)
    ax.legend(fontsize=7)

    ax = axes[2]
    for v in r.variants:
        losses = r.path_losses[v]
        ends = (losses[:, :1] + losses[:, -1:]) / 2
        ax.semilogy(r.path_alphas, (losses / ends).mean(0), "o-", ms=3, color=colors[v], label=v)
    ax.set_title("loss on the line between members")
    ax.set_xlabel("alpha: (1 - alpha) member k + alpha member k+1")
    ax.set_ylabel("loss / endpoints' loss (mean of pairs)")
    ax.legend(fontsize=7)

    ax = axes[3]
    cin = [100 * r.coverage[v] for v in r.variants]
    cout = [100 * r.coverage_out[v] for v in r.variants]
    ax.bar(x - 0.2, cin, 0.4, color=[colors[v] for v in r.variants], label="in range")
    ax.bar(x + 0.2, cout, 0.4, color="white", edgecolor=[colors[v] for v in r.variants],
           hatch="//", label="volatility out of range")  # fmt: skip
    ax.axhline(100 * r.level, color="k", ls="--", lw=1, label=f"nominal {r.level:.0%}")
    ax.set_xticks(x, short, rotation=20, fontsize=8)
    ax.set_ylim(0, 105)
    ax.set_ylabel("% of test prices inside the interval")
    ax.set_title(f"{r.level:.0%} interval coverage (most useful: {r.most_useful.split(' (')[0]})")
    ax.legend(fontsize=7, loc="upper left")
    return fig
