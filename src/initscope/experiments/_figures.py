"""One figure per experiment, drawn from its result dataclass (matplotlib is imported only here)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from initscope.experiments import _figures_warm
from initscope.experiments._figures_ensembles import draw_ensembles

COLORS = {
    "xavier": "tab:blue",
    "he": "tab:red",
    "xavier+bn": "tab:cyan",
    "he+bn": "tab:orange",
    "orthogonal": "tab:green",
    "gaussian": "tab:purple",
    "tanh": "tab:blue",
    "relu": "tab:red",
}
LABELS = {"xavier": "Xavier", "he": "He", "xavier+bn": "Xavier + BN", "he+bn": "He + BN"}
STYLES = {"xavier+bn": "--", "he+bn": "--"}


def draw(name: str, result: Any, path: str | Path, *, dpi: int = 110) -> Path:
    """Draw experiment ``name``'s figure from ``result`` and save it as a PNG at ``path``."""
    fig = _DRAWERS[name](result)
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    return path


def _figure(ncols: int, width: float = 5.2, height: float = 3.9) -> tuple[Figure, list[Axes]]:
    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    return fig, list(fig.subplots(1, ncols))


def _integer_x(ax: Axes) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _band(ax: Axes, x: np.ndarray, runs: np.ndarray, key: str) -> None:
    """Mean over repeats (rows) as a line, min..max as a shaded band."""
    color = COLORS[key]
    ax.plot(x, runs.mean(0), STYLES.get(key, "-"), color=color, lw=2, label=LABELS[key])
    if len(runs) > 1:
        ax.fill_between(x, runs.min(0), runs.max(0), color=color, alpha=0.2, lw=0)


def _scale_sweep(r: Any) -> Figure:
    fig, axes = _figure(4, width=4.6)
    layers = np.arange(1, r.n_layers + 1)
    for ax, label in zip(axes[:3], r.scales, strict=True):
        ax.plot(layers, r.layer_std[label], "b-", lw=2, label="std of h")
        ax.plot(layers, r.layer_mean_abs[label], "k--", lw=1, label="mean |h|")
        ax.set_ylim(0, 1.5)
        ax.set_xlabel("layer")
        ax.set_ylabel("activation std")
        name = f"Xavier ({r.xavier_scale:.4f})" if label == "Xavier" else label
        ax.set_title(f"tanh, s = {name}")
        _integer_x(ax)
        ax.annotate(
            f"layer {r.n_layers}: std {r.layer_std[label][-1]:.2g}",
            (0.97, 0.92),
            xycoords="axes fraction",
            ha="right",
        )
        ax.legend(loc="center right", fontsize=8)
    ax = axes[3]
    ax.loglog(r.sweep_scales, r.sweep_tanh_std, color=COLORS["tanh"], lw=2, label="tanh")
    ax.loglog(r.sweep_scales, r.sweep_relu_std, color=COLORS["relu"], lw=2, label="ReLU")
    ax.axhspan(0.1, 10, color="tab:green", alpha=0.15, lw=0, label="usable: std in [0.1, 10]")
    for key, window in (("tanh", r.window_tanh), ("relu", r.window_relu)):
        if window is not None:
            ax.axvspan(*window, color=COLORS[key], alpha=0.15, lw=0)
    ax.axvline(r.xavier_scale, color=COLORS["tanh"], ls=":", label=f"Xavier {r.xavier_scale:.3f}")
    ax.axvline(r.he_scale, color=COLORS["relu"], ls=":", label=f"He {r.he_scale:.3f}")
    ax.set_ylim(1e-20, 1e10)
    ax.set_xlabel("weight std s")
    ax.set_ylabel(f"activation std at layer {r.n_layers}")
    ax.set_title("final std against the weight scale")
    ax.legend(fontsize=7, loc="upper left")
    return fig


def _per_layer(ax: Axes, stds: dict[str, np.ndarray], title: str) -> None:
    for key, values in stds.items():
        layers = np.arange(1, len(values) + 1)
        ax.plot(layers, values, STYLES.get(key, "-"), color=COLORS[key], lw=2, label=LABELS[key])
    ax.set_yscale("log", base=2)
    _integer_x(ax)
    ax.set_xlabel("layer")
    ax.set_ylabel("pre-activation std")
    ax.set_title(title)


def _training(axes: list[Axes], curves: dict[str, dict[str, np.ndarray]], repeats: int) -> None:
    for key, c in curves.items():
        epochs = np.arange(1, c["train_loss"].shape[1] + 1)
        _band(axes[0], epochs, c["train_loss"], key)
        _band(axes[1], epochs, 100 * c["test_accuracy"], key)
    axes[0].axhline(np.log(10), color="gray", ls=":", lw=1, label="chance (ln 10)")
    spread = f" (mean, min-max of {repeats})" if repeats > 1 else ""
    axes[0].set_title("training loss on digits" + spread)
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("cross-entropy")
    axes[1].set_title("test accuracy" + spread)
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("%")
    axes[1].set_ylim(0, 100)
    for ax in axes:
        ax.legend(fontsize=8)
        _integer_x(ax)


def _xavier_vs_he(r: Any) -> Figure:
    fig, axes = _figure(3)
    _per_layer(axes[0], r.stds, f"ReLU net, {r.depth} layers of {r.width}, at init")
    layers = np.arange(1, r.depth + 1)
    theory = r.stds["xavier"][0] * 2.0**r.theory_xavier_log2
    axes[0].plot(layers, theory, "k:", lw=1, label="Xavier theory: 2^(-(l-1)/2)")
    axes[0].legend(fontsize=8)
    _training(axes[1:], r.curves, r.repeats)
    return fig


def _normalization(r: Any) -> Figure:
    fig, axes = _figure(3)
    _per_layer(axes[0], r.stds, f"ReLU-input std, {r.depth} layers, at init")
    axes[0].legend(fontsize=8)
    _training(axes[1:], r.curves, r.repeats)
    return fig


def _deep_linear(r: Any) -> Figure:
    fig, axes = _figure(3)
    for kind, sv in r.singular_values.items():
        axes[0].semilogy(np.arange(1, len(sv) + 1), sv, "o-", ms=3, color=COLORS[kind], label=kind)
        depth = np.arange(1, len(r.band[kind]) + 1)
        axes[1].semilogy(
            depth, r.band[kind][:, 1], color=COLORS[kind], lw=2, label=f"{kind} median"
        )
        axes[1].fill_between(
            depth, r.band[kind][:, 0], r.band[kind][:, 2], color=COLORS[kind], alpha=0.2, lw=0
        )
        axes[2].semilogy(
            np.arange(len(r.loss[kind])), r.loss[kind], color=COLORS[kind], lw=2, label=kind
        )
    floor = np.finfo(np.float64).eps * r.singular_values["gaussian"].max()
    axes[0].axhline(floor, color="gray", ls=":", lw=1, label="float64 round-off")
    axes[0].set_title(f"singular values of W_{r.depth} ... W_1 (width {r.width})")
    axes[0].set_xlabel("index")
    axes[0].set_ylabel("singular value")
    axes[1].set_title("singular values of W_l ... W_1 (min-max band)")
    axes[1].set_xlabel("depth l")
    axes[2].axhline(r.zero_map_loss, color="gray", ls=":", lw=1, label="predicting 0")
    axes[2].set_title(f"training a {r.depth}-layer linear net (SGD, lr {r.lr:g})")
    axes[2].set_xlabel("step")
    axes[2].set_ylabel("loss")
    for ax in axes:
        ax.legend(fontsize=8)
    return fig


def _pricing(r: Any) -> Figure:
    fig, axes = _figure(3)
    colors = dict(zip(r.variants, ("tab:gray", "tab:red", "tab:green", "tab:blue"), strict=False))
    for v in r.variants:
        axes[0].semilogy(r.eval_steps, r.mse[v], color=colors[v], lw=2, label=v)
    axes[0].set_title(f"test MSE (Adam, mean of {r.repeats})")
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("MSE of C / K")
    q = np.linspace(0.0, 1.0, 201)
    axes[1].plot(q, np.quantile(r.test_targets, q), "k-", lw=2.5, label="BS prices")
    for v in r.variants:
        axes[1].plot(q, np.quantile(r.initial_predictions[v], q), color=colors[v], lw=2, label=v)
    axes[1].axhline(np.log(2), color="k", ls=":", lw=1, label="softplus(0) = ln 2")
    axes[1].set_title("predictions at init vs prices (sorted)")
    axes[1].set_xlabel("quantile")
    axes[1].set_ylabel("C / K")
    axes[2].loglog(
        r.head_scales, r.head_pred_std, "o-", color="tab:red", ms=3, label="prediction std"
    )
    axes[2].axhline(r.target_std, color="black", ls="--", lw=1, label="price std")
    axes[2].axvline(r.xavier_head_std, color="tab:red", ls=":", label="Xavier head")
    axes[2].set_title(f"head init sets the scale (slope {r.head_slope:.2f})")
    axes[2].set_xlabel("head weight std (He backbone)")
    axes[2].set_ylabel("std of initial predictions")
    for ax in axes:
        ax.legend(fontsize=7)
    return fig


_DRAWERS: dict[str, Callable[[Any], Figure]] = {
    "scale_sweep": _scale_sweep,
    "xavier_vs_he": _xavier_vs_he,
    "normalization": _normalization,
    "deep_linear": _deep_linear,
    "pricing": _pricing,
    "warm_start": _figures_warm.warm_start,
    "transfer": _figures_warm.transfer,
    "ensembles": draw_ensembles,
}
