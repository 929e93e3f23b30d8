"""``diversity``: how differently the members of an ensemble predict, represent and sit.

The measures and where they come from: the ambiguity decomposition (Krogh & Vedelsby 1995),
pairwise disagreement and KL to the ensemble mean (Fort, Hu & Lakshminarayanan 2019;
Lakshminarayanan et al. 2017), linear CKA per layer (Kornblith et al. 2019, computed by
:func:`initscope.diagnostics.linear_cka`), cosine similarity of the weights, the loss barrier on
the straight line between two members (Frankle et al. 2020) and the coverage of the ensemble's
prediction intervals.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from statistics import NormalDist
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from initscope._torch import check_int
from initscope.diagnostics import linear_cka
from initscope.ensembles._basins import LossFn, check_pairs, default_loss
from initscope.ensembles._basins import basins as basins_
from initscope.ensembles._ensemble import Ensemble
from initscope.ensembles._results import (
    ClassificationDiversity,
    Coverage,
    Diversity,
    RegressionDiversity,
    RepresentationDiversity,
    WeightDiversity,
    off_diagonal_mean,
)
from initscope.ensembles._view import Members, as_args, first_tensor

__all__ = ["diversity"]

Task = Literal["regression", "classification"]
_TASKS = ("regression", "classification")


def _task(task: Any, outputs: Tensor, targets: Tensor | None) -> str:
    if task is not None:
        if task not in _TASKS:
            raise ValueError(f"task: expected one of {', '.join(_TASKS)} or None, got {task!r}")
        return str(task)
    if targets is not None:
        return "regression" if targets.is_floating_point() else "classification"
    return "classification" if outputs.dim() >= 3 and outputs.shape[-1] > 1 else "regression"


# ----------------------------------------------------------------------------- measures


def _regression(out: Tensor, targets: Tensor | None, level: float) -> tuple[Any, Any]:
    f = out.reshape(out.shape[0], -1).to(torch.float64)  # (n, M)
    mean = f.mean(0)
    ambiguity = float(((f - mean) ** 2).mean())
    spread = float(f.std(0, correction=0).mean())
    if targets is None:
        return RegressionDiversity(spread, ambiguity, None, None, None, None, None), None
    try:
        y = torch.broadcast_to(targets, out.shape[1:]).reshape(-1).to(torch.float64)
    except RuntimeError:
        raise ValueError(
            f"targets: shape {tuple(targets.shape)} does not match a member's output "
            f"{tuple(out.shape[1:])}"
        ) from None
    err = f - y
    member_errors = (err**2).mean(1)
    with np.errstate(divide="ignore", invalid="ignore"):  # a constant error: NaN, no warning
        corr = np.corrcoef(err.numpy())
    reg = RegressionDiversity(
        spread=spread,
        ambiguity=ambiguity,
        ensemble_error=float(((mean - y) ** 2).mean()),
        mean_member_error=float(member_errors.mean()),
        member_errors=member_errors.numpy(),
        error_correlation=corr,
        mean_error_correlation=off_diagonal_mean(corr),
    )
    coverage = None
    if out.shape[0] > 1:
        z = NormalDist().inv_cdf((1 + level) / 2)
        half = z * f.std(0, correction=1)
        coverage = Coverage(
            level=level,
            z=z,
            coverage=float(((y - mean).abs() <= half).double().mean()),
            mean_width=float(2 * half.mean()),
            n=int(y.numel()),
        )
    return reg, coverage


def _classification(out: Tensor, targets: Tensor | None) -> ClassificationDiversity:
    n, c = out.shape[0], out.shape[-1]
    logp = torch.log_softmax(out.reshape(n, -1, c).to(torch.float64), dim=-1)  # (n, M, C)
    pred = logp.argmax(-1)
    disagree = (pred[:, None, :] != pred[None, :, :]).double().mean(-1).numpy()
    log_mean = torch.logsumexp(logp, dim=0) - math.log(n)
    kl = (logp.exp() * (logp - log_mean)).sum(-1).mean(-1).clamp_min(0.0)
    member_acc = ens_acc = None
    if targets is not None:
        if targets.shape != out.shape[1:-1]:
            raise ValueError(
                f"targets: expected class indices of shape {tuple(out.shape[1:-1])} (the "
                f"output without its class dim), got {tuple(targets.shape)}"
            )
        y = targets.reshape(-1)
        member_acc = (pred == y).double().mean(-1).numpy()
        ens_acc = float((log_mean.argmax(-1) == y).double().mean())
    return ClassificationDiversity(
        disagreement=disagree,
        mean_disagreement=off_diagonal_mean(disagree),
        kl_to_mean=kl.numpy(),
        mean_kl_to_mean=float(kl.mean()),
        member_accuracy=member_acc,
        ensemble_accuracy=ens_acc,
    )


def _default_layers(model: nn.Module) -> list[str]:
    """Modules that hold parameters of their own (Linear, Conv, norms, ...), in order."""
    return [
        name
        for name, m in model.named_modules()
        if name and any(True for _ in m.parameters(recurse=False))
    ]


def _recorder(store: dict[str, Tensor], name: str) -> Callable[..., None]:
    def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
        store[name] = first_tensor(output, f"layers: the output of {name!r}")

    return hook


def _representations(
    members: Members, args: tuple, layers: Sequence[str]
) -> RepresentationDiversity:
    modules = members.modules()
    seen = {name for name, _ in modules[0].named_modules()}
    missing = [name for name in layers if name not in seen]
    if missing:
        raise ValueError(f"layers: no module named {', '.join(map(repr, missing))} in the members")
    acts: list[dict[str, Tensor]] = []
    for m in modules:
        got: dict[str, Tensor] = {}
        handles = []
        try:
            subs = dict(m.named_modules())
            for name in layers:
                handles.append(subs[name].register_forward_hook(_recorder(got, name)))
            m(*args)
        finally:
            for h in handles:
                h.remove()
        acts.append(got)
    n = members.n
    cka: dict[str, np.ndarray] = {}
    for name in layers:
        mat = np.eye(n)
        for i in range(n):
            for j in range(i + 1, n):
                try:
                    v = linear_cka(acts[i][name], acts[j][name])
                except ValueError:  # a representation constant over the examples
                    v = math.nan
                mat[i, j] = mat[j, i] = v
        cka[name] = mat
    return RepresentationDiversity(cka, {k: off_diagonal_mean(v) for k, v in cka.items()})


def _weights(states: list[dict[str, Tensor]], names: list[str]) -> WeightDiversity:
    vecs = torch.stack(
        [torch.cat([s[k].reshape(-1).to(torch.float64) for k in names]) for s in states]
    )
    norms = vecs.norm(dim=1)
    cos = (vecs @ vecs.T) / (norms[:, None] * norms[None, :])
    mat = cos.numpy()
    np.fill_diagonal(mat, np.where(norms.numpy() > 0, 1.0, math.nan))
    return WeightDiversity(mat, off_diagonal_mean(mat))


# ----------------------------------------------------------------------------- public


def diversity(
    members: Ensemble | Sequence[nn.Module],
    inputs: Tensor | tuple,
    targets: Tensor | None = None,
    *,
    task: Task | None = None,
    layers: Sequence[str] | None = None,
    level: float = 0.9,
    pairs: Sequence[tuple[int, int]] | None = None,
    points: int = 11,
    loss: LossFn | None = None,
) -> Diversity:
    """Measure the diversity of an ensemble's members on a batch; change nothing.

    Members run in eval mode under ``torch.no_grad`` (modes, parameters, buffers, grads and the
    global RNG are left as they were; hooks are removed even on error).

    Args:
        members: an :class:`Ensemble` or a list of at least two models (the weight and basin
            measures need one architecture; with different ones they are ``None``).
        inputs: the batch: a tensor, or a tuple of positional arguments.
        targets: regression targets (float, the shape of one member's output) or class indices
            (integer, the output's shape without its last, class, dim). With targets: errors,
            ambiguity decomposition, accuracy, basins and interval coverage (use held-out data).
        task: ``"regression"`` or ``"classification"``; default: from the targets' dtype
            (float: regression), else classification when the output has a class dim > 1
            after the batch dim.
        layers: module paths whose outputs are compared by linear CKA (default: every module
            holding parameters of its own; ``[]`` skips the measure).
        level: the prediction intervals' nominal coverage, in (0, 1).
        pairs: member pairs for the loss barrier (default ``(0, 1), (1, 2), ...``).
        points: points on each linear path, endpoints included (>= 3).
        loss: ``loss(output, targets) -> scalar`` for the barrier (default: mean squared error,
            or cross-entropy on logits).

    Returns:
        A :class:`Diversity` with fields ``regression`` or ``classification``,
        ``representations``, ``weights``, ``basins``, ``coverage``.

    Raises:
        TypeError, ValueError: bad arguments (named), before any model runs.
    """
    view = Members(members)
    if view.n < 2:
        raise ValueError(f"members: expected at least 2 members, got {view.n}")
    args = as_args(inputs)
    if targets is not None and not isinstance(targets, Tensor):
        raise TypeError(f"targets: expected a tensor or None, got {type(targets).__name__}")
    if task is not None and task not in _TASKS:
        raise ValueError(f"task: expected one of {', '.join(_TASKS)} or None, got {task!r}")
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise ValueError(f"level: expected a number in (0, 1), got {level!r}")
    points = check_int("points", points, low=3)
    pair_list = check_pairs(pairs, view.n)
    if loss is not None and not callable(loss):
        raise TypeError(f"loss: expected a callable (output, targets) -> scalar, got {loss!r}")
    if layers is not None and (isinstance(layers, str) or not isinstance(layers, Sequence)):
        raise TypeError("layers: expected a list of module paths")
    layer_list = _default_layers(view.template) if layers is None else list(layers)

    with view.evaluating():
        out = view.outputs(args)
        kind = _task(task, out, targets)
        reg = cls = coverage = None
        if kind == "regression":
            reg, coverage = _regression(out, targets, float(level))
        else:
            if out.dim() < 3:
                raise ValueError(
                    "task: classification needs outputs (batch, ..., classes), got a member "
                    f"output of shape {tuple(out.shape[1:])}"
                )
            cls = _classification(out, targets)
        reps = _representations(view, args, layer_list) if layer_list else None
        weights = basins = None
        if view.states is not None:
            names = [
                k
                for k, t in view.states[0].items()
                if t.is_floating_point() and k in dict(view.template.named_parameters())
            ]
            weights = _weights(view.states, names)
            if targets is not None:
                fn = loss if loss is not None else default_loss(kind)
                basins = basins_(view, args, targets, fn, pair_list, points)
    return Diversity(
        n_members=view.n,
        task=kind,
        regression=reg,
        classification=cls,
        representations=reps,
        weights=weights,
        basins=basins,
        coverage=coverage,
    )
