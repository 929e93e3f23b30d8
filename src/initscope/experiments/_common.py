"""Pieces shared by the experiments: claims, result serialization, data, small nets, training."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal, get_args

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from initscope import init
from initscope._torch import jsonable

Scheme = Literal["xavier", "he"]
_SCHEMES: tuple[str, ...] = get_args(Scheme)
DEFAULT_SEED = 0


@dataclasses.dataclass(frozen=True)
class Claim:
    """A classic claim, what the experiment measured, and whether the measurement agrees.

    ``reproduced`` comes from a fixed criterion, stated in the claim or next to it in the
    experiment's ``run`` (e.g. "within 3 points of accuracy"), the same for every seed.
    """

    claim: str
    measured: str
    reproduced: bool


class Result:
    """Mixin for the experiments' result dataclasses: ``claims`` plus JSON-ready ``to_dict``."""

    claims: list[Claim]

    def to_dict(self) -> dict[str, Any]:
        """All fields as JSON-ready Python values (arrays become lists, NaN/inf become None)."""
        return jsonable(dataclasses.asdict(self))  # type: ignore[call-overload]


def generator_or_default(generator: torch.Generator | None) -> torch.Generator:
    """The caller's generator, or a fresh one seeded with :data:`DEFAULT_SEED` (deterministic)."""
    if generator is None:
        return torch.Generator().manual_seed(DEFAULT_SEED)
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator: expected a torch.Generator or None, got {type(generator).__name__}"
        )
    return generator


def child_generator(generator: torch.Generator) -> torch.Generator:
    """A new generator seeded from ``generator`` (one per repeat, so repeats are independent)."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return torch.Generator().manual_seed(seed)


@contextmanager
def one_thread() -> Iterator[None]:
    """Run with one intra-op thread; the previous setting is restored on exit.

    The experiments' matrices are small and the demo shares a small CPU machine: on a busy
    machine a second thread mostly waits (measured: 10x slower under load).
    """
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


# ----------------------------------------------------------------------------- digits data


@dataclasses.dataclass(frozen=True)
class Split:
    """A train/test split of a classification set; features standardized with train statistics."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def digits(generator: torch.Generator, test_fraction: float = 0.25) -> Split:
    """scikit-learn's bundled 8x8 digits (1797 images, 64 features, 10 classes), shuffled and split.

    The data ships inside scikit-learn (no download). Raises ``ModuleNotFoundError`` with the
    install command when scikit-learn is missing.
    """
    try:
        from sklearn.datasets import load_digits
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            "the digits experiments need scikit-learn (its bundled digits data set): "
            "pip install scikit-learn"
        ) from None
    x_np, y_np = load_digits(return_X_y=True)
    x = torch.as_tensor(x_np, dtype=torch.float32)
    y = torch.as_tensor(y_np, dtype=torch.long)
    perm = torch.randperm(len(x), generator=generator)
    n_test = round(test_fraction * len(x))
    test, train = perm[:n_test], perm[n_test:]
    mean = x[train].mean(0)
    std = x[train].std(0).clamp_min(1e-3)  # a few border pixels are constant
    x = (x - mean) / std
    return Split(x[train], y[train], x[test], y[test])


# ----------------------------------------------------------------------------- ReLU MLPs


def relu_mlp(
    depth: int, width: int, *, in_features: int, out_features: int, batch_norm: bool = False
) -> nn.Sequential:
    """``depth`` blocks of Linear (+ BatchNorm1d) + ReLU, then a Linear head.

    Linear layers are built with ``torch.nn.utils.skip_init`` (nothing is drawn from the global
    RNG); set their values with :func:`init_linears`. Under BatchNorm the Linear has no bias.
    """
    layers: list[nn.Module] = []
    d = in_features
    for _ in range(depth):
        layers.append(nn.utils.skip_init(nn.Linear, d, width, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm1d(width))
        layers.append(nn.ReLU())
        d = width
    layers.append(nn.utils.skip_init(nn.Linear, d, out_features))
    return nn.Sequential(*layers)


def init_linears(model: nn.Module, scheme: Scheme, generator: torch.Generator) -> nn.Module:
    """Every Linear: Xavier normal (``Var = 2 / (fan_in + fan_out)``) or He normal
    (``Var = 2 / fan_in``); biases zero."""
    if scheme not in _SCHEMES:
        raise ValueError(f"scheme: expected one of {_SCHEMES}, got {scheme!r}")
    for m in model.modules():
        if isinstance(m, nn.Linear):
            if scheme == "xavier":
                init.xavier_normal_(m.weight, generator=generator)
            else:
                init.kaiming_normal_(m.weight, nonlinearity="relu", generator=generator)
            if m.bias is not None:
                init.zeros_(m.bias)
    return model


@torch.no_grad()
def preactivation_stds(model: nn.Sequential, x: torch.Tensor) -> np.ndarray:
    """Std of the input of each ReLU (the pre-activation, after BatchNorm when there is one)."""
    stds = []
    h = x
    for module in model:
        if isinstance(module, nn.ReLU):
            stds.append(h.std().item())
        h = module(h)
    return np.asarray(stds)


def train_classifier(
    model: nn.Module,
    data: Split,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    generator: torch.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Plain SGD (momentum 0.9) on cross-entropy, batches shuffled with ``generator``.

    Returns per epoch the mean training loss and the test accuracy after the epoch (eval mode).
    """
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    n = len(data.x_train)
    losses, accs = [], []
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=generator)
        total = 0.0
        # drop the last, partial batch: a batch of 4 destabilized the 20-layer nets
        for i in range(0, n - batch_size + 1, batch_size):
            idx = perm[i : i + batch_size]
            loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item()
        losses.append(total / (n // batch_size))
        model.eval()
        with torch.no_grad():
            pred = model(data.x_test).argmax(1)
        accs.append((pred == data.y_test).float().mean().item())
    return np.asarray(losses), np.asarray(accs)


def train_repeats(
    data: Split,
    *,
    scheme: Scheme,
    batch_norm: bool,
    depth: int,
    width: int,
    epochs: int,
    lr: float,
    batch_size: int,
    repeats: int,
    generator: torch.Generator,
) -> dict[str, np.ndarray]:
    """Train ``repeats`` fresh ReLU MLPs (each from its own child generator) with
    :func:`train_classifier`; returns ``{"train_loss", "test_accuracy"}``, each
    ``(repeats, epochs)``."""
    losses, accs = [], []
    for _ in range(repeats):
        g = child_generator(generator)
        net = relu_mlp(
            depth,
            width,
            in_features=data.x_train.shape[1],
            out_features=int(data.y_train.max()) + 1,
            batch_norm=batch_norm,
        )
        init_linears(net, scheme, g)
        loss, acc = train_classifier(
            net, data, epochs=epochs, lr=lr, batch_size=batch_size, generator=g
        )
        losses.append(loss)
        accs.append(acc)
    return {"train_loss": np.stack(losses), "test_accuracy": np.stack(accs)}


def policy_initialize() -> Callable[..., Any] | None:
    """``initscope.initialize`` (the policy's ``initialize(model, preset="auto")``) once the package
    exports it, else None."""
    import initscope

    return getattr(initscope, "initialize", None)


# ----------------------------------------------------------------------------- any-activation MLPs

#: The activation modules the experiments' MLPs use, by name.
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}


def mlp(
    activation: str, depth: int, width: int, *, in_features: int, out_features: int
) -> nn.Sequential:
    """``depth`` blocks of Linear (with bias) + activation, then a Linear head; no normalization.

    Linear layers are built with ``torch.nn.utils.skip_init`` (nothing drawn from the global RNG):
    give them values with ``initscope.initialize(model, preset, generator=...)`` or a scheme.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation: expected one of {tuple(ACTIVATIONS)}, got {activation!r}")
    layers: list[nn.Module] = []
    d = in_features
    for _ in range(depth):
        layers += [nn.utils.skip_init(nn.Linear, d, width), ACTIVATIONS[activation]()]
        d = width
    layers.append(nn.utils.skip_init(nn.Linear, d, out_features))
    return nn.Sequential(*layers)


@dataclasses.dataclass(frozen=True)
class StepCurves:
    """Training loss at every SGD step and training-set accuracy after every epoch."""

    loss: np.ndarray
    train_accuracy: np.ndarray


def train_per_step(
    model: nn.Module,
    data: Split,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    generator: torch.Generator,
    momentum: float = 0.0,
) -> StepCurves:
    """SGD on cross-entropy (``momentum`` 0: plain SGD), batches shuffled with ``generator``, the
    last partial batch dropped. A loss that turns non-finite stays NaN for the remaining steps."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    n = len(data.x_train)
    steps = n // batch_size
    losses = np.full(epochs * steps, np.nan)
    accs = np.full(epochs, np.nan)
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=generator)
        for i in range(steps):
            idx = perm[i * batch_size : (i + 1) * batch_size]
            loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
            if not torch.isfinite(loss):
                return StepCurves(losses, accs)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses[epoch * steps + i] = loss.item()
        model.eval()
        with torch.no_grad():
            pred = model(data.x_train).argmax(1)
        accs[epoch] = (pred == data.y_train).double().mean().item()
    return StepCurves(losses, accs)
