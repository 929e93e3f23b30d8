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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from statistics import NormalDist
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from initscope.diagnostics import linear_cka
from initscope.ensembles._members import Ensemble, _check_int
from initscope.ensembles._results import (
    BasinDiversity,
    ClassificationDiversity,
    Coverage,
    Diversity,
    RegressionDiversity,
    RepresentationDiversity,
    WeightDiversity,
    off_diagonal_mean,
)

__all__ = ["diversity", "loss_barrier"]

Task = Literal["regression", "classification"]
_TASKS = ("regression", "classification")
LossFn = Callable[[Tensor, Tensor], Tensor]


class _Members:
    """A uniform view of an :class:`Ensemble` or a list of models: outputs, per-member state
    (name -> tensor), the module to substitute states into, and ordinary modules for hooks."""

    def __init__(self, members: Ensemble | Sequence[nn.Module]) -> None:
        if isinstance(members, Ensemble):
            self.ensemble: Ensemble | None = members
            self.n = members.n
            self.template: nn.Module = members._template
            params, buffers = members.stacked_parameters(), members.stacked_buffers()
            self.states: list[dict[str, Tensor]] | None = [
                {name: t[k] for name, t in (*params.items(), *buffers.items())}
                for k in range(self.n)
            ]
            self._modules: list[nn.Module] | None = None
            return
        if isinstance(members, nn.Module) or not isinstance(members, Sequence):
            got = type(members).__name__
            raise TypeError(f"members: expected an Ensemble or a list of nn.Module, got {got}")
        for i, m in enumerate(members):
            if not isinstance(m, nn.Module):
                raise TypeError(f"members[{i}]: expected an nn.Module, got {type(m).__name__}")
        if len(members) < 2:
            raise ValueError(f"members: expected at least 2 members, got {len(members)}")
        self.ensemble = None
        self.n = len(members)
        self._modules = list(members)
        self.template = self._modules[0]
        states = [dict([*m.named_parameters(), *m.named_buffers()]) for m in self._modules]
        shapes = [{k: (t.shape, t.dtype) for k, t in s.items()} for s in states]
        # weights and basins need one architecture; predictions do not
        self.states = states if all(s == shapes[0] for s in shapes) else None

    def modules(self) -> list[nn.Module]:
        if self._modules is not None:
            return self._modules
        assert self.ensemble is not None
        return self.ensemble.members()

    def outputs(self, args: tuple) -> Tensor:
        if self.ensemble is not None:
            out = self.ensemble(*args)
        else:
            out = torch.stack([_first_tensor(m(*args), "a member's output") for m in self._modules])  # type: ignore[union-attr]
        return _first_tensor(out, "the members' output")

    @contextmanager
    def evaluating(self) -> Iterator[None]:
        """Eval mode, no grad, forked global RNG; every module's mode restored on exit."""
        owners: list[nn.Module] = [self.ensemble] if self.ensemble is not None else self._modules  # type: ignore[list-item]
        modes = [(m, m.training) for o in owners for m in o.modules()]
        try:
            for o in owners:
                o.eval()
            with torch.no_grad(), torch.random.fork_rng(devices=[]):
                yield
        finally:
            for m, mode in modes:
                m.training = mode
            if self.ensemble is not None:
                self.ensemble.train(self.ensemble.training)


def _first_tensor(out: Any, what: str) -> Tensor:
    if isinstance(out, Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor):
        return out[0]
    raise TypeError(f"{what}: expected a tensor (or a tuple starting with one), got "
                    f"{type(out).__name__}")  # fmt: skip


def _args(inputs: Any) -> tuple:
    if isinstance(inputs, Tensor):
        return (inputs,)
    if isinstance(inputs, tuple) and inputs:
        return inputs
    raise TypeError(
        f"inputs: expected a tensor or a tuple of positional arguments, got {type(inputs).__name__}"
    )


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
        store[name] = _first_tensor(output, f"layers: the output of {name!r}")

    return hook


def _representations(
    members: _Members, args: tuple, layers: Sequence[str]
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


def _default_loss(task: str) -> LossFn:
    if task == "regression":

        def mse(out: Tensor, y: Tensor) -> Tensor:
            return F.mse_loss(out.to(torch.float64), torch.broadcast_to(y, out.shape).double())

        return mse

    def ce(out: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(out.reshape(-1, out.shape[-1]).to(torch.float64), y.reshape(-1))

    return ce


def _path_losses(
    template: nn.Module,
    a: dict[str, Tensor],
    b: dict[str, Tensor],
    alphas: np.ndarray,
    args: tuple,
    targets: Tensor,
    loss: LossFn,
) -> np.ndarray:
    losses = []
    for alpha in alphas:
        state = {
            k: torch.lerp(a[k], b[k], float(alpha)) if a[k].is_floating_point() else a[k] for k in a
        }
        out = _first_tensor(functional_call(template, state, args), "the model's output")
        losses.append(float(loss(out, targets)))
    return np.asarray(losses)


def _basins(
    members: _Members,
    args: tuple,
    targets: Tensor,
    loss: LossFn,
    pairs: list[tuple[int, int]],
    points: int,
) -> BasinDiversity:
    assert members.states is not None
    alphas = np.linspace(0.0, 1.0, points)
    losses = np.stack(
        [
            _path_losses(
                members.template, members.states[i], members.states[j], alphas, args, targets, loss
            )
            for i, j in pairs
        ]
    )
    ends = (losses[:, 0] + losses[:, -1]) / 2
    line = np.outer(losses[:, 0], 1 - alphas) + np.outer(losses[:, -1], alphas)
    barriers = (losses - line).max(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.where(ends > 0, barriers / ends, math.nan)
    return BasinDiversity(
        pairs=pairs,
        alphas=alphas,
        losses=losses,
        barriers=barriers,
        relative_barriers=relative,
        mean_barrier=float(barriers.mean()),
        max_barrier=float(barriers.max()),
    )


def _check_pairs(pairs: Any, n: int) -> list[tuple[int, int]]:
    if pairs is None:
        return [(k, k + 1) for k in range(n - 1)]
    if isinstance(pairs, (str, bytes)) or not isinstance(pairs, Sequence) or not pairs:
        raise TypeError("pairs: expected a non-empty list of (i, j) member indices")
    out = []
    for p in pairs:
        if not (isinstance(p, Sequence) and len(p) == 2):
            raise TypeError(f"pairs: expected (i, j) pairs, got {p!r}")
        i, j = (_check_int(v, "pairs", 0) for v in p)
        if i >= n or j >= n or i == j:
            raise ValueError(f"pairs: expected two different members in 0..{n - 1}, got {p!r}")
        out.append((i, j))
    return out


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
    view = _Members(members)
    if view.n < 2:
        raise ValueError(f"members: expected at least 2 members, got {view.n}")
    args = _args(inputs)
    if targets is not None and not isinstance(targets, Tensor):
        raise TypeError(f"targets: expected a tensor or None, got {type(targets).__name__}")
    if task is not None and task not in _TASKS:
        raise ValueError(f"task: expected one of {', '.join(_TASKS)} or None, got {task!r}")
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise ValueError(f"level: expected a number in (0, 1), got {level!r}")
    points = _check_int(points, "points", 3)
    pair_list = _check_pairs(pairs, view.n)
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
                fn = loss if loss is not None else _default_loss(kind)
                basins = _basins(view, args, targets, fn, pair_list, points)
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


def loss_barrier(
    a: nn.Module,
    b: nn.Module,
    inputs: Tensor | tuple,
    targets: Tensor,
    loss: LossFn,
    *,
    points: int = 11,
) -> BasinDiversity:
    """The loss along ``(1 - alpha) a + alpha b`` and its barrier (Frankle et al. 2020) for two
    models of one architecture, in eval mode; changes nothing. See :class:`BasinDiversity`."""
    if not callable(loss):
        raise TypeError(f"loss: expected a callable (output, targets) -> scalar, got {loss!r}")
    if not isinstance(targets, Tensor):
        raise TypeError(f"targets: expected a tensor, got {type(targets).__name__}")
    view = _Members([a, b])
    if view.states is None:
        raise ValueError("a, b: expected two models with the same parameters and buffers")
    points = _check_int(points, "points", 3)
    args = _args(inputs)
    with view.evaluating():
        return _basins(view, args, targets, loss, [(0, 1)], points)
