"""The initialization problem: activation and gradient scale through a deep tanh net as the weight
scale varies.

The textbook picture of the initialization problem (20 tanh layers of width 256, a batch of 512,
``W ~ N(0, s^2)``, no bias) for ``s`` = 0.001, 1.0 and Xavier's ``sqrt(2 / (n + n))``: the std of
every layer's activations (forward) and of the loss gradient with respect to every layer's
pre-activation (backward), with mean-field theory's prediction (``initscope.depth_profile``) drawn
over the measurement. Then a sweep of ``s`` on a log grid for tanh and ReLU: per layer the
variance is multiplied by about ``n s^2 c`` (``c`` = 1 for tanh near 0, 1/2 for ReLU), so only a
narrow window around ``s = 1 / sqrt(c n)`` keeps the signal alive (Glorot & Bengio 2010;
He et al. 2015).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

import initscope
from initscope import init
from initscope.experiments._common import (
    Claim,
    Result,
    generator_or_default,
    one_thread,
)

TITLE = "Weight scale vs depth (tanh, ReLU)"
SATURATED = 0.99  # |tanh| above this counts as saturated
USABLE = (0.1, 10.0)  # final std within this factor range of the input's std (1)


@dataclasses.dataclass
class ScaleSweepResult(Result):
    """Per-layer statistics of ``h = tanh(h @ W)`` for the three textbook scales, and the sweep.

    ``layer_grad_std[label]``: std of ``dL/dz_l`` (``z_l`` layer l's pre-activation) for the loss
    ``L = sum(r * h_20)``, ``r ~ N(0, 1)``; ``theory_std`` / ``theory_grad_std``: mean-field
    theory's prediction for the same quantities (the gradient anchored at the measured top
    layer); ``theory_sweep_*``: the theory's final std and ``log2(std dL/dz_1 / std dL/dz_20)``
    over the sweep."""

    n_layers: int
    width: int
    batch: int
    scales: dict[str, float]
    layer_std: dict[str, np.ndarray]
    layer_mean_abs: dict[str, np.ndarray]
    layer_saturated: dict[str, np.ndarray]
    layer_grad_std: dict[str, np.ndarray]
    theory_std: dict[str, np.ndarray]
    theory_grad_std: dict[str, np.ndarray]
    sweep_scales: np.ndarray
    sweep_tanh_std: np.ndarray
    sweep_tanh_saturated: np.ndarray
    sweep_relu_std: np.ndarray
    theory_sweep_tanh_std: np.ndarray
    theory_sweep_relu_std: np.ndarray
    theory_sweep_tanh_grad_log2: np.ndarray
    theory_sweep_relu_grad_log2: np.ndarray
    xavier_scale: float
    he_scale: float
    window_tanh: tuple[float, float] | None
    window_relu: tuple[float, float] | None
    claims: list[Claim]


def _window(scales: np.ndarray, ok: np.ndarray) -> tuple[float, float] | None:
    """Smallest and largest usable scale (None when no point of the grid is usable)."""
    if not ok.any():
        return None
    return float(scales[ok].min()), float(scales[ok].max())


def _contains(window: tuple[float, float] | None, s: float) -> bool:
    return window is not None and window[0] <= s <= window[1]


def _fmt_window(window: tuple[float, float] | None) -> str:
    if window is None:
        return "no usable scale on the grid"
    lo, hi = window
    return f"s in [{lo:.3g}, {hi:.3g}] (a factor {hi / lo:.2f})"


def _theory(act: str, s: float, width: int, n_layers: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean-field prediction for ``h_l = f(z_l)``, ``z_l = h_{l-1} W``, ``W ~ N(0, s^2)``, unit
    input: the std of ``h_l`` and ``log2(std dL/dz_l / std dL/dz_{n_layers})``, l = 1..n_layers.

    ``sigma_w^2 = n s^2`` and ``Var(z_1) = n s^2``; ``E[f(z_l)^2] = q_{l+1} / sigma_w^2``
    (``initscope.depth_profile`` one layer deeper, whose backward curve, shifted, is the one of
    ``n_layers`` layers); f(z) has mean 0 for tanh, not for ReLU, whose
    std is ``sqrt(E[f^2] - E[f]^2)`` with ``E[relu(z)] = sqrt(q / (2 pi))``.
    """
    sw2 = width * s * s
    deeper = initscope.depth_profile(act, sw2, 0.0, n_layers + 1, sw2)
    second = np.asarray(deeper.q[1:]) / sw2
    if act == "relu":
        second = second - np.asarray(deeper.q[:-1]) / (2 * math.pi)
    back = np.asarray(deeper.backward_log2_per_layer)  # counted from layer n_layers + 1
    return np.sqrt(second), back[:-1] - back[-2]


def run(*, quick: bool = False, generator: torch.Generator | None = None) -> ScaleSweepResult:
    """Run the experiment; ``quick`` uses a coarser sweep and smaller sweep batch.

    The sweep's log grid over ``[0.001, 1]`` also holds Xavier's and He's scales exactly.

    Computed in float64 so that collapsed activations (~1e-36) stay normal numbers.
    """
    g = generator_or_default(generator)
    n_layers, width, batch = 20, 256, 512
    sweep_points, sweep_batch = (25, 32) if quick else (97, 64)
    xavier = math.sqrt(2.0 / (width + width))
    he = math.sqrt(2.0 / width)
    scales = {"too small (0.001)": 0.001, "too large (1.0)": 1.0, "Xavier": xavier}
    with one_thread():
        x = torch.randn(batch, width, generator=g, dtype=torch.float64)
        std, mean_abs, saturated, grad_std = {}, {}, {}, {}
        for label, s in scales.items():
            h = x
            rows, pre = [], []
            for _ in range(n_layers):
                w = torch.empty(width, width, dtype=torch.float64)
                z = h @ init.normal_(w, 0.0, s, generator=g).requires_grad_()
                z.retain_grad()
                pre.append(z)
                h = torch.tanh(z)
                a = h.detach().abs()
                sat = (a > SATURATED).double().mean().item()
                rows.append((h.std().item(), a.mean().item(), sat))
            r = torch.randn(batch, width, generator=g, dtype=torch.float64)
            (h * r).sum().backward()
            std[label], mean_abs[label], saturated[label] = np.asarray(rows).T
            grad_std[label] = np.asarray([z.grad.std().item() for z in pre])  # type: ignore[union-attr]

        # The sweep shares one N(0, 1) matrix per layer across scales (common random numbers).
        grid = np.union1d(np.logspace(-3, 0, sweep_points), [xavier, he])
        sweep_points = len(grid)
        s_col = torch.as_tensor(grid, dtype=torch.float64)[:, None, None]
        h_tanh = x[:sweep_batch].expand(sweep_points, -1, -1)
        h_relu = h_tanh
        for _ in range(n_layers):
            w0 = init.normal_(torch.empty(width, width, dtype=torch.float64), generator=g)
            h_tanh = torch.tanh(s_col * (h_tanh @ w0))
            h_relu = torch.relu(s_col * (h_relu @ w0))
        tanh_std = h_tanh.flatten(1).std(1).numpy()
        tanh_sat = (h_tanh.abs() > SATURATED).flatten(1).double().mean(1).numpy()
        relu_std = h_relu.flatten(1).std(1).numpy()

    theory_std, theory_grad = {}, {}
    for label, s in scales.items():
        fwd, bwd = _theory("tanh", s, width, n_layers)
        theory_std[label] = fwd
        theory_grad[label] = grad_std[label][-1] * 2.0**bwd
    th_sweep = {a: [_theory(a, s, width, n_layers) for s in grid] for a in ("tanh", "relu")}

    lo, hi = USABLE
    win_tanh = _window(grid, (tanh_std >= lo) & (tanh_std <= hi) & (tanh_sat < 0.1))
    win_relu = _window(grid, (relu_std >= lo) & (relu_std <= hi))

    small, large = std["too small (0.001)"], std["too large (1.0)"]
    xav_std, xav_sat = std["Xavier"], saturated["Xavier"]
    narrow = [w is not None and w[1] / w[0] < 4.0 for w in (win_tanh, win_relu)]
    claims = [
        Claim(
            "Too small a scale (s = 0.001) makes a deep tanh net's activations collapse to ~0.",
            f"std falls from {small[0]:.2g} (layer 1) to {small[-1]:.2g} (layer {n_layers}).",
            bool(small[-1] < 1e-3 * small[0]),
        ),
        Claim(
            "Too large a scale (s = 1.0) saturates tanh: |h| ~ 1 at every layer.",
            f"layer {n_layers}: mean |h| = {mean_abs['too large (1.0)'][-1]:.3f}, "
            f"{100 * saturated['too large (1.0)'][-1]:.0f}% of units with |h| > {SATURATED}, "
            f"std {large[-1]:.3f}.",
            bool(mean_abs["too large (1.0)"][-1] > 0.9),
        ),
        Claim(
            "Xavier's scale sqrt(2 / (n_in + n_out)) keeps the activations in a usable range.",
            f"std {xav_std[0]:.2f} (layer 1) -> {xav_std[-1]:.2f} (layer {n_layers}), "
            f"at most {100 * xav_sat.max():.1f}% saturated.",
            bool(((xav_std >= 0.1) & (xav_std <= 0.9)).all() and xav_sat.max() < 0.05),
        ),
        Claim(
            "Only a narrow window of scales around the right one keeps a deep net's signal "
            f"(final std within [{lo:g}, {hi:g}] x the input's, tanh < 10% saturated).",
            f"tanh: {_fmt_window(win_tanh)}, Xavier s = {xavier:.3g}; "
            f"ReLU: {_fmt_window(win_relu)}, He s = {he:.3g}; the sweep spans a factor 1000.",
            bool(_contains(win_tanh, xavier) and _contains(win_relu, he) and all(narrow)),
        ),
    ]
    gaps = [np.abs(np.log2(std[k]) - np.log2(theory_std[k])).max() for k in scales] + [
        np.abs(np.log2(grad_std[k]) - np.log2(theory_grad[k])).max() for k in scales
    ]
    claims.append(
        Claim(
            "Mean-field theory (Poole et al. 2016) predicts the forward and the backward std at "
            "every layer, for all three scales (within a factor 2, i.e. 1 bit).",
            f"largest gap between measured and predicted std over {n_layers} layers and the three "
            f"scales: {max(gaps):.2f} bits (forward {max(gaps[:3]):.2f}, backward "
            f"{max(gaps[3:]):.2f}); the gradient at layer 1 is "
            + ", ".join(f"{k} 2^{np.log2(grad_std[k][0] / grad_std[k][-1]):+.0f}" for k in scales)
            + f" times the one at layer {n_layers}.",
            bool(max(gaps) <= 1.0),
        )
    )
    return ScaleSweepResult(
        n_layers=n_layers,
        width=width,
        batch=batch,
        scales=scales,
        layer_std=std,
        layer_mean_abs=mean_abs,
        layer_saturated=saturated,
        layer_grad_std=grad_std,
        theory_std=theory_std,
        theory_grad_std=theory_grad,
        sweep_scales=grid,
        sweep_tanh_std=tanh_std,
        sweep_tanh_saturated=tanh_sat,
        sweep_relu_std=relu_std,
        theory_sweep_tanh_std=np.asarray([f[-1] for f, _ in th_sweep["tanh"]]),
        theory_sweep_relu_std=np.asarray([f[-1] for f, _ in th_sweep["relu"]]),
        theory_sweep_tanh_grad_log2=np.asarray([b[0] for _, b in th_sweep["tanh"]]),
        theory_sweep_relu_grad_log2=np.asarray([b[0] for _, b in th_sweep["relu"]]),
        xavier_scale=xavier,
        he_scale=he,
        window_tanh=win_tanh,
        window_relu=win_relu,
        claims=claims,
    )
