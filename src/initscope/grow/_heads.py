"""A new output head for a model whose body already learned something: zero, small, calibrated to
the targets, or fitted on the frozen features (linear probing before fine-tuning: LP-FT, Kumar,
Raghunathan, Jones, Ma & Liang 2022, "Fine-Tuning can Distort Pretrained Features and
Underperform Out-of-Distribution")."""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils._pytree import tree_flatten

from initscope._torch import check_int, check_real
from initscope.graph import inspect_model

__all__ = ["HeadMode", "HeadResult", "Link", "init_head"]

HeadMode = Literal["zero", "small", "calibrated", "probe"]
Link = Literal["identity", "softplus", "sigmoid", "exp", "softmax"]
_MODES: tuple[str, ...] = get_args(HeadMode)
_LINKS: tuple[str, ...] = get_args(Link)


@dataclass(frozen=True)
class HeadResult:
    """What :func:`init_head` wrote and what the head predicts on the data afterwards.

    Attributes:
        head: the head's module path; ``mode`` and ``link`` as used; ``link_from``:
            ``"argument"`` or ``"model"`` (matched between the head's and the model's outputs).
        weight_std, bias: the head's new weight std and bias values.
        target_mean, target_std: of the targets (classes: of their one-hot encoding, per class
            averaged).
        pred_mean, pred_std: the same of the model's predictions (classes: probabilities).
        loss: MSE (regression) or cross-entropy (classes) of the predictions on the data.
    """

    head: str
    mode: str
    link: str
    link_from: str
    weight_std: float
    bias: tuple[float, ...]
    target_mean: float
    target_std: float
    pred_mean: float
    pred_std: float
    loss: float

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["bias"] = list(self.bias)
        return d

    def __str__(self) -> str:
        b = ", ".join(f"{v:.4g}" for v in self.bias[:4]) + (", ..." if len(self.bias) > 4 else "")
        return (
            f"head {self.head!r} ({self.mode}, link {self.link} from {self.link_from}): "
            f"weight std {self.weight_std:.3g}, bias [{b}]; predictions {self.pred_mean:.4g} "
            f"+- {self.pred_std:.4g} against targets {self.target_mean:.4g} +- "
            f"{self.target_std:.4g}; loss {self.loss:.4g}"
        )


def _link_fn(link: str) -> Any:
    return {
        "identity": lambda z: z,
        "softplus": F.softplus,
        "sigmoid": torch.sigmoid,
        "exp": torch.exp,
        "softmax": lambda z: torch.softmax(z, -1),
    }[link]


def _inverse(link: str, m: Tensor) -> Tensor:
    """The link's inverse at the target mean ``m`` (per output)."""
    if link == "identity":
        return m
    tiny = torch.finfo(m.dtype).tiny
    if link == "softplus":
        if (m <= 0).any():
            raise ValueError("data: softplus outputs are > 0; the targets' mean is not")
        return torch.where(m > 20, m, torch.log(torch.expm1(m.clamp_min(tiny))))
    if link == "exp":
        if (m <= 0).any():
            raise ValueError("data: exp outputs are > 0; the targets' mean is not")
        return torch.log(m)
    if link == "sigmoid":
        if ((m <= 0) | (m >= 1)).any():
            raise ValueError("data: sigmoid outputs lie in (0, 1); the targets' mean does not")
        return torch.log(m) - torch.log1p(-m)
    return torch.log(m.clamp_min(tiny))  # softmax: log class frequencies (up to a constant)


def _call(model: nn.Module, inputs: Any) -> Any:
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


@torch.no_grad()
def _features(model: nn.Module, head: nn.Module, inputs: Any) -> tuple[Tensor, Tensor, Tensor]:
    """The head's input and output and the model's output on ``inputs``, in eval mode; modes
    and the random state are restored, nothing else changes in eval mode."""
    seen: dict[str, Tensor] = {}

    def hook(_: nn.Module, args: tuple, out: Any) -> None:
        if "x" not in seen:
            seen["x"], seen["z"] = args[0], out

    modes = [(m, m.training) for m in model.modules()]
    handle = head.register_forward_hook(hook)
    try:
        with torch.random.fork_rng(devices=[]):
            model.eval()
            out = _call(model, inputs)
    finally:
        handle.remove()
        for m, mode in modes:
            m.training = mode
    if "x" not in seen:
        raise ValueError("head: the head module never runs on data's inputs")
    leaves = [t for t in tree_flatten(out)[0] if isinstance(t, Tensor)]
    if not leaves:
        raise ValueError("model: its output holds no tensor")
    return seen["x"], seen["z"], leaves[0]


def _find_head(model: nn.Module, inputs: Any, head: Any) -> tuple[str, nn.Linear]:
    modules = dict(model.named_modules())
    if head is not None:
        if not isinstance(head, str):
            raise TypeError(f"head: expected a module path (str), got {type(head).__name__}")
        m = modules.get(head)
        if not isinstance(m, nn.Linear):
            got = "no such module" if m is None else type(m).__name__
            raise ValueError(f"head: expected the path of an nn.Linear in the model, got {got}")
        return head, m
    example = inputs if isinstance(inputs, (Tensor, tuple, dict)) else None
    layers = inspect_model(model, example)
    found = [
        layer for layer in layers
        if layer.is_output and layer.calls > 0 and isinstance(layer.module, nn.Linear)
    ]  # fmt: skip
    if len(found) != 1:
        names = ", ".join(repr(layer.path) for layer in found) or "none"
        raise ValueError(
            f"head: the model's graph shows {len(found)} Linear output layers ({names}); "
            "name the head with head="
        )
    return found[0].path, found[0].module  # type: ignore[return-value]


def _match_link(z: Tensor, y: Tensor) -> str | None:
    """The link ``y = link(z)`` among the known ones, matched on the data."""
    if z.numel() != y.numel():
        return None
    y = y.reshape(z.shape).double()
    z = z.double()
    for link in ("identity", "softplus", "sigmoid", "exp", "softmax"):
        if link == "softmax" and z.shape[-1] < 2:
            continue
        p = _link_fn(link)(z)
        if torch.allclose(p, y, rtol=1e-4, atol=1e-6 * float(y.abs().max().clamp_min(1e-30))):
            return link
    return None


def _plan_draw(model: nn.Module, path: str, w: Tensor, example: Any, g: Any) -> Tensor:
    """A fresh draw of the head's weight by the model's ``auto`` plan (Xavier normal when the
    plan leaves it untouched)."""
    from initscope.policy import plan

    out = torch.empty_like(w, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # other untouched parameters
        entry = plan(model, example_input=example)[f"{path}.weight"]
    if entry.touched:
        for c in entry.choices:
            c.apply(out, g)
    else:
        nn.init.xavier_normal_(out, generator=g)
    return out


def _spread(p: Tensor) -> float:
    return float(p.std(0).mean()) if p.shape[0] > 1 else 0.0


def init_head(
    model: nn.Module,
    data: tuple[Any, Tensor],
    mode: HeadMode = "calibrated",
    *,
    head: str | None = None,
    link: Link | None = None,
    spread: float = 0.1,
    scale: float = 0.01,
    ridge: float = 1e-3,
    steps: int = 50,
    example_input: Any = None,
    generator: torch.Generator | None = None,
) -> HeadResult:
    """Initialize the output head (the model's last Linear) for a new task, in place.

    With features ``h`` (the head's input on ``inputs``, in eval mode), the head computes
    ``z = W h + b`` and the model ``link(z)``. Modes:

    - ``"zero"``: ``W = 0, b = 0``.
    - ``"small"``: ``W = scale * W0``, ``W0`` a fresh draw of the model's ``auto`` plan,
      ``b = 0``.
    - ``"calibrated"``: the predictions start at the targets' mean with a chosen spread:
      ``b = link^-1(mean(y)) - s W0 mean(h)``, so the mean pre-activation is exactly
      ``link^-1(mean(y))`` (softmax: ``log`` of the class frequencies), and ``W = s W0`` with
      ``s`` found by bisection so that the std of the predictions over the data is
      ``spread * std(y)`` (per output, averaged; classes: of the probabilities against the
      one-hot targets).
    - ``"probe"`` (linear probing, the first half of LP-FT, Kumar et al. 2022): fit the head on
      the frozen features: ridge regression in closed form for the identity link,
      ``W = Y_c^T H_c (H_c^T H_c + lambda I)^-1``, ``b = mean(y) - W mean(h)`` with
      ``lambda = ridge * tr(H_c^T H_c) / d``; other links start from ridge regression on
      ``link^-1(y)`` and take ``steps`` L-BFGS steps on the squared error; classes take
      ``steps`` L-BFGS steps of multinomial logistic regression (penalty ``lambda |W|^2``)
      from the calibrated bias.

    The link is read from the model: the function between the head's output and the model's
    output on ``inputs`` (identity, softplus, sigmoid, exp, softmax), or given as ``link=``;
    integer targets mean classes (softmax over the head's outputs, raw logits allowed).
    Only the head's parameters change (the rest of the model, its buffers, modes and frozen
    flags stay as they are).

    Args:
        model: the model.
        data: ``(inputs, targets)``: inputs as the model takes them (a tensor, a tuple of
            positional inputs or a dict of keyword inputs); targets ``(N,)`` or ``(N, k)``
            floats, or ``(N,)`` class indices.
        mode: ``"zero"``, ``"small"``, ``"calibrated"`` or ``"probe"``.
        head: the head's module path (an ``nn.Linear``); default: the model's only Linear
            output layer found by :func:`initscope.inspect_model`.
        link: override the link.
        spread: calibrated: target ratio of the predictions' std to the targets' std.
        scale: small: the factor on the plan's draw.
        ridge: probe: relative ridge penalty.
        steps: probe: L-BFGS steps (non-identity links, classes).
        example_input: for :func:`initscope.inspect_model` when the inputs are not a batch it
            can use.
        generator: for ``W0`` (small, calibrated).

    Raises:
        TypeError, ValueError: bad arguments, a frozen head, targets that do not fit the head
        or the link; nothing has changed then.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise TypeError("data: expected a pair (inputs, targets)")
    inputs, targets = data
    if not isinstance(targets, Tensor):
        raise TypeError(f"data: targets must be a tensor, got {type(targets).__name__}")
    if mode not in _MODES:
        raise ValueError(f"mode: expected one of {', '.join(map(repr, _MODES))}, got {mode!r}")
    if link is not None and link not in _LINKS:
        raise ValueError(f"link: expected one of {', '.join(map(repr, _LINKS))}, got {link!r}")
    spread = check_real("spread", spread, low=0)
    scale = check_real("scale", scale, low=0)
    ridge = check_real("ridge", ridge, low=0)
    steps = check_int("steps", steps, low=1)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator: expected a torch.Generator or None, got {type(generator).__name__}"
        )
    path, lin = _find_head(model, example_input if example_input is not None else inputs, head)
    if any(not p.requires_grad for p in lin.parameters()):
        raise ValueError(f"head: {path!r} is frozen (requires_grad=False); unfreeze it first")
    if mode in ("calibrated", "probe") and lin.bias is None:
        raise ValueError(f"head: mode {mode!r} sets the bias; {path!r} has none")
    h, z, y_model = _features(model, lin, inputs)
    if h.dim() != 2:
        raise ValueError(
            f"head: expected 2-d features (batch, {lin.in_features}), got {tuple(h.shape)}"
        )
    k = lin.out_features
    classes = not targets.is_floating_point()
    link_from = "argument"
    if link is None:
        link_from = "model"
        link = _match_link(z, y_model)  # type: ignore[assignment]
        if link is None:
            raise ValueError(
                f"link: the model's output is none of {', '.join(_LINKS)} of the head's output "
                f"({path!r}) on these inputs; pass link="
            )
        if classes and link == "identity":
            link = "softmax"  # raw logits for a cross-entropy loss
    n = h.shape[0]
    if classes:
        if link != "softmax" or targets.shape != (n,) or k < 2:
            raise ValueError(
                f"data: class targets need a softmax over >= 2 outputs and shape ({n},), "
                f"got link {link} over {k} outputs and shape {tuple(targets.shape)}"
            )
        if int(targets.min()) < 0 or int(targets.max()) >= k:
            raise ValueError(f"data: class targets must lie in [0, {k}), got {targets.unique()}")
        t = F.one_hot(targets.long(), k).double()
    else:
        t = targets.detach().double().reshape(n, -1)
        if t.shape[1] != k:
            raise ValueError(
                f"data: {tuple(targets.shape)} targets do not fit the head's {k} outputs"
            )
        if not torch.isfinite(t).all():
            raise ValueError("data: targets contain inf or nan")
    fn = _link_fn(link)
    hd = h.detach().double()
    example = example_input if example_input is not None else inputs
    if mode == "zero":
        w, b = (
            torch.zeros(k, lin.in_features, dtype=torch.float64),
            torch.zeros(k, dtype=torch.float64),
        )
    elif mode == "small":
        w = scale * _plan_draw(model, path, lin.weight, example, generator)
        b = torch.zeros(k, dtype=torch.float64)
    else:
        b0 = _inverse(link, t.mean(0))
        w0 = _plan_draw(model, path, lin.weight, example, generator)
        if mode == "calibrated":
            s = _calibrate_scale(hd, w0, b0, fn, spread * _spread(t))
            w = s * w0
            b = b0 - w @ hd.mean(0)
        elif classes:
            w, b = _logistic(hd, targets.long(), b0, ridge, steps)
        else:
            w, b = _ridge_fit(hd, t, link, fn, ridge, steps)
    pred = fn(hd @ w.T + b)
    loss = (
        float(F.nll_loss(torch.log(pred.clamp_min(1e-300)), targets.long()))
        if classes
        else float(((pred - t) ** 2).mean())
    )
    with torch.no_grad():
        lin.weight.copy_(w.to(lin.weight.dtype))
        if lin.bias is not None:
            lin.bias.copy_(b.to(lin.bias.dtype))
    return HeadResult(
        head=path,
        mode=mode,
        link=link,
        link_from=link_from,
        weight_std=float(w.std()) if w.numel() > 1 else 0.0,
        bias=tuple(float(v) for v in b),
        target_mean=float(t.mean()),
        target_std=_spread(t),
        pred_mean=float(pred.mean()),
        pred_std=_spread(pred),
        loss=loss,
    )


def _calibrate_scale(h: Tensor, w0: Tensor, b0: Tensor, fn: Any, goal: float) -> float:
    """``s`` with ``std(link(s W0 (h - mean h) + b0)) = goal``, by bisection on ``log s``."""
    if goal <= 0:
        return 0.0
    zc = (h - h.mean(0)) @ w0.T

    def gap(log_s: float) -> float:
        return _spread(fn(math.exp(log_s) * zc + b0)) - goal

    lo, hi = -30.0, 10.0
    if gap(hi) < 0:  # the link saturates before the goal: take the widest
        return math.exp(hi)
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if gap(mid) < 0:
            lo = mid
        else:
            hi = mid
    return math.exp(0.5 * (lo + hi))


def _ridge(h: Tensor, t: Tensor, ridge: float) -> tuple[Tensor, Tensor]:
    hm, tm = h.mean(0), t.mean(0)
    hc, tc = h - hm, t - tm
    gram = hc.T @ hc
    lam = ridge * float(gram.trace()) / max(h.shape[1], 1)
    w = torch.linalg.solve(gram + lam * torch.eye(h.shape[1], dtype=h.dtype), hc.T @ tc).T
    return w, tm - w @ hm


def _ridge_fit(
    h: Tensor, t: Tensor, link: str, fn: Any, ridge: float, steps: int
) -> tuple[Tensor, Tensor]:
    if link == "identity":
        return _ridge(h, t, ridge)
    eps = 1e-4 * float(t.abs().max().clamp_min(1e-12))
    clipped = t.clamp(eps, 1 - eps) if link == "sigmoid" else t.clamp_min(eps)
    w, b = _ridge(h, _inverse(link, clipped), ridge)
    lam = ridge * float(((h - h.mean(0)) ** 2).sum()) / max(h.shape[1], 1) / h.shape[0]
    return _lbfgs(
        w, b, lambda w, b: ((fn(h @ w.T + b) - t) ** 2).mean() + lam * (w**2).sum(), steps
    )


def _logistic(h: Tensor, y: Tensor, b0: Tensor, ridge: float, steps: int) -> tuple[Tensor, Tensor]:
    k = b0.shape[0]
    w = torch.zeros(k, h.shape[1], dtype=h.dtype)
    lam = ridge * float(((h - h.mean(0)) ** 2).sum()) / max(h.shape[1], 1) / h.shape[0]
    return _lbfgs(
        w, b0.clone(), lambda w, b: F.cross_entropy(h @ w.T + b, y) + lam * (w**2).sum(), steps
    )


def _lbfgs(w: Tensor, b: Tensor, loss_fn: Any, steps: int) -> tuple[Tensor, Tensor]:
    w = w.clone().requires_grad_(True)
    b = b.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = loss_fn(w, b)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach(), b.detach()
