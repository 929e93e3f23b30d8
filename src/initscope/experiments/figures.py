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
    "torch": "tab:gray",
    "auto": "tab:green",
    "lsuv": "tab:purple",
    "he, lr 0.01": "tab:orange",
    "zero": "black",
    "constant": "tab:orange",
    "guide": "tab:red",
}
LABELS = {
    "xavier": "Xavier",
    "he": "He",
    "xavier+bn": "Xavier + BN",
    "he+bn": "He + BN",
    "torch": "torch default",
    "auto": "initscope auto",
    "lsuv": "LSUV",
    "he, lr 0.01": "He, lr 0.01",
    "zero": "zero",
    "constant": "constant",
    "guide": "classic guide",
}
STYLES = {"xavier+bn": "--", "he+bn": "--", "he, lr 0.01": "--"}


def draw(name: str, result: Any, path: str | Path, *, dpi: int = 110) -> Path:
    """Draw experiment ``name``'s figure from ``result`` and save it as a PNG at ``path``."""
    fig = _DRAWERS[name](result)
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    return path


def _figure(
    ncols: int, width: float = 5.2, height: float = 3.9, nrows: int = 1
) -> tuple[Figure, list[Axes]]:
    """A figure of ``nrows x ncols`` panels; the axes in reading order."""
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    return fig, list(np.ravel(fig.subplots(nrows, ncols)))


def _integer_x(ax: Axes) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _band(
    ax: Axes, x: np.ndarray, runs: np.ndarray, key: str, label: str | None = None, lw: float = 2
) -> None:
    """Mean over repeats (rows) as a line, min..max as a shaded band (NaN: a diverged run,
    left out of the band; the mean stops where a run diverged)."""
    color = COLORS[key]
    ax.plot(x, runs.mean(0), STYLES.get(key, "-"), color=color, lw=lw, label=label or LABELS[key])
    if len(runs) > 1:
        with np.errstate(all="ignore"):
            lo, hi = np.nanmin(runs, 0), np.nanmax(runs, 0)
        ax.fill_between(x, lo, hi, color=color, alpha=0.2, lw=0)


def _scale_sweep(r: Any) -> Figure:
    fig, axes = _figure(4, width=4.6, height=3.7, nrows=2)
    layers = np.arange(1, r.n_layers + 1)
    for col, label in enumerate(r.scales):
        name = f"Xavier ({r.xavier_scale:.4f})" if label == "Xavier" else label
        ax = axes[col]  # forward; a log axis where the std collapses (a linear one shows 0)
        ax.plot(layers, r.layer_std[label], "b-", lw=2, label="std of h (measured)")
        ax.plot(layers, r.layer_mean_abs[label], "k--", lw=1, label="mean |h|")
        ax.plot(layers, r.theory_std[label], ":", color="tab:orange", lw=2.5, label="theory")
        if r.layer_std[label].min() < 1e-3:
            ax.set_yscale("log")
            ax.set_ylabel("activation std (log axis)")
        else:
            ax.set_ylim(0, 1.2)
            ax.set_ylabel("activation std")
        ax.set_title(f"tanh, s = {name}: forward")
        ax.annotate(
            f"layer {r.n_layers}: std {r.layer_std[label][-1]:.2g}",
            (0.97, 0.04),
            xycoords="axes fraction",
            ha="right",
        )
        ax = axes[4 + col]  # backward
        ax.semilogy(layers, r.layer_grad_std[label], "r-", lw=2, label="std of dL/dz (measured)")
        ax.semilogy(
            layers, r.theory_grad_std[label], ":", color="tab:orange", lw=2.5, label="theory"
        )
        ax.set_ylabel("gradient std (log axis)")
        ax.set_title(f"tanh, s = {name}: backward")
        for ax in (axes[col], axes[4 + col]):
            ax.set_xlabel("layer")
            _integer_x(ax)
            ax.legend(loc="center right", fontsize=7)
    ax = axes[3]
    ax.loglog(r.sweep_scales, r.sweep_tanh_std, color=COLORS["tanh"], lw=2, label="tanh")
    ax.loglog(r.sweep_scales, r.sweep_relu_std, color=COLORS["relu"], lw=2, label="ReLU")
    ax.loglog(r.sweep_scales, r.theory_sweep_tanh_std, ":", color="k", lw=1.5, label="theory")
    ax.loglog(r.sweep_scales, r.theory_sweep_relu_std, ":", color="k", lw=1.5)
    ax.axhspan(0.1, 10, color="tab:green", alpha=0.15, lw=0, label="usable: std in [0.1, 10]")
    for key, window in (("tanh", r.window_tanh), ("relu", r.window_relu)):
        if window is not None:
            ax.axvspan(*window, color=COLORS[key], alpha=0.15, lw=0)
    ax.axvline(r.xavier_scale, color=COLORS["tanh"], ls="--", lw=1, label="Xavier")
    ax.axvline(r.he_scale, color=COLORS["relu"], ls="--", lw=1, label="He")
    ax.set_ylim(1e-20, 1e10)
    ax.set_xlabel("weight std s")
    ax.set_ylabel(f"activation std at layer {r.n_layers}")
    ax.set_title("forward: final std against the weight scale")
    ax.legend(fontsize=7, loc="upper left")
    ax = axes[7]
    for key, values in (
        ("tanh", r.theory_sweep_tanh_grad_log2),
        ("relu", r.theory_sweep_relu_grad_log2),
    ):
        ax.semilogx(r.sweep_scales, values, color=COLORS[key], lw=2, label=f"{key} (theory)")
    for label, s in r.scales.items():
        g = r.layer_grad_std[label]
        ax.semilogx(s, np.log2(g[0] / g[-1]), "o", color="k", ms=5)
    ax.plot([], [], "o", color="k", ms=5, label="tanh measured (the 3 scales)")
    ax.axhline(0, color="gray", lw=1)
    ax.axvline(r.xavier_scale, color=COLORS["tanh"], ls="--", lw=1)
    ax.axvline(r.he_scale, color=COLORS["relu"], ls="--", lw=1)
    ax.set_ylim(-130, 50)
    ax.set_xlabel("weight std s")
    ax.set_ylabel(f"log2(gradient std at layer 1 / layer {r.n_layers})")
    ax.set_title("backward: gradient growth toward the input")
    ax.legend(fontsize=7, loc="lower right")
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
    axes[0].set_ylabel("MSE of call price / strike (C / K)")
    q = np.linspace(0.0, 1.0, 201)
    axes[1].plot(q, np.quantile(r.test_targets, q), "k-", lw=2.5, label="Black-Scholes prices")
    for v in r.variants:
        axes[1].plot(q, np.quantile(r.initial_predictions[v], q), color=colors[v], lw=2, label=v)
    axes[1].axhline(np.log(2), color="k", ls=":", lw=1, label="softplus(0) = ln 2")
    axes[1].set_title("predictions at init vs prices (sorted)")
    axes[1].set_xlabel("quantile")
    axes[1].set_ylabel("call price / strike (C / K)")
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


def _symmetry(r: Any) -> Figure:
    fig, axes = _figure(4, width=4.4)
    epochs = np.arange(len(next(iter(r.rank.values()))))
    for key in r.rank:
        axes[0].plot(epochs, r.rank[key], "o-", ms=3, color=COLORS[key], lw=2, label=LABELS[key])
        steps = np.arange(1, len(r.loss[key]) + 1)
        axes[1].plot(steps, r.loss[key], color=COLORS[key], lw=1.2, label=LABELS[key])
    axes[0].set_yscale("symlog", linthresh=1)
    axes[0].set_ylim(-0.3, 2 * r.width)
    axes[0].set_title(f"rank of the hidden representation ({r.width} units)")
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("rank (0, 1, ..., 64)")
    axes[1].axhline(np.log(10), color="gray", ls=":", lw=1, label="chance (ln 10)")
    axes[1].set_title("training loss on digits (SGD)")
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("cross-entropy")
    for ax in axes[:2]:
        ax.legend(fontsize=8)
        _integer_x(ax)
    for ax, key in zip(axes[2:], ("constant", "xavier"), strict=True):
        image = ax.imshow(r.snapshot[key], aspect="auto", cmap="coolwarm", vmin=-1, vmax=1)
        ax.set_title(f"{LABELS[key]}: hidden units after training")
        ax.set_xlabel("unit")
        ax.set_ylabel("test image")
    fig.colorbar(image, ax=axes[3], label="activation (tanh)")
    return fig


def _beyond_guide(r: Any) -> Figure:
    fig, axes = _figure(3, width=5.0, height=3.8, nrows=2)
    layers = np.arange(1, r.depth + 1)
    names = {"gelu": "GELU", "silu": "SiLU", "tanh": "tanh"}
    guide = {"gelu": "He", "silu": "He", "tanh": "Xavier"}
    for col, act in enumerate(names):
        ax = axes[col]
        for init in ("guide", "auto"):
            key = f"{act}/{init}"
            label = f"{guide[act]} (classic guide)" if init == "guide" else "initscope auto"
            ax.plot(layers, r.forward_log2[key], "-", color=COLORS[init], lw=2, label=label)
            ax.plot(layers, r.backward_log2[key], "--", color=COLORS[init], lw=2)
            ax.plot(layers, r.theory_forward_log2[key], ":", color="k", lw=1.5)
            ax.plot(layers, r.theory_backward_log2[key], ":", color="k", lw=1.5)
        ax.plot([], [], "k-", label="forward (measured)")
        ax.plot([], [], "k--", label="backward (measured)")
        ax.plot([], [], "k:", label="theory")
        ax.set_title(f"{names[act]}, {r.depth} layers of {r.width}: signal at init")
        ax.set_xlabel("layer")
        ax.set_ylabel("log2(std / std at layer 1)   [backward: / layer 50]")
        ax.legend(fontsize=7, loc="lower left")
        _integer_x(ax)
        ax = axes[3 + col]
        for init in ("guide", "auto"):
            key = f"{act}/{init}"
            runs = r.loss[key]
            label = f"{guide[act]} (classic guide)" if init == "guide" else "initscope auto"
            _band(ax, np.arange(1, runs.shape[1] + 1), runs, init, label=label, lw=1.2)
        ax.axhline(np.log(10), color="gray", ls=":", lw=1, label="chance (ln 10)")
        spread = f" (mean, min-max of {r.repeats})" if r.repeats > 1 else ""
        ax.set_title(f"{names[act]}: training loss on digits{spread}")
        ax.set_xlabel("step")
        ax.set_ylabel("cross-entropy")
        ax.legend(fontsize=7)
        _integer_x(ax)
    return fig


def _deep_relu(r: Any) -> Figure:
    fig, axes = _figure(3)
    for key, values in r.stds.items():
        if key == "he, lr 0.01":  # the same init as "he"
            continue
        layers = np.arange(1, len(values) + 1)
        axes[0].plot(layers, values, color=COLORS[key], lw=2, label=LABELS[key])
    axes[0].set_yscale("log", base=2)
    axes[0].set_title(f"ReLU-input std at init, {r.depth} layers of {r.width}")
    axes[0].set_xlabel("layer")
    axes[0].set_ylabel("std (log2 axis)")
    for key in r.loss:
        runs = r.loss[key]
        _band(axes[1], np.arange(1, runs.shape[1] + 1), runs, key, lw=1.2)
        acc = 100 * r.train_accuracy[key]
        _band(axes[2], np.arange(1, acc.shape[1] + 1), acc, key)
    axes[1].axhline(np.log(10), color="gray", ls=":", lw=1, label="chance (ln 10)")
    spread = f" (mean, min-max of {r.repeats})" if r.repeats > 1 else ""
    axes[1].set_title(f"training loss, SGD lr {r.lr:g}{spread}")
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("cross-entropy")
    axes[1].set_ylim(0, 3)
    axes[2].set_title("train accuracy" + spread)
    axes[2].set_xlabel("epoch")
    axes[2].set_ylabel("%")
    axes[2].set_ylim(0, 100)
    for ax in axes:
        ax.legend(fontsize=7)
        _integer_x(ax)
    return fig


_DRAWERS: dict[str, Callable[[Any], Figure]] = {
    "symmetry": _symmetry,
    "beyond_guide": _beyond_guide,
    "deep_relu": _deep_relu,
    "scale_sweep": _scale_sweep,
    "xavier_vs_he": _xavier_vs_he,
    "normalization": _normalization,
    "deep_linear": _deep_linear,
    "pricing": _pricing,
    "warm_start": _figures_warm.warm_start,
    "transfer": _figures_warm.transfer,
    "ensembles": draw_ensembles,
}
