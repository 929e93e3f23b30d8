"""Ensemble members drawn by the plan, stacked, and run in one vectorized call.

Deep ensembles (Lakshminarayanan, Pritzel & Blundell 2017) train N copies of a network from
independent random initializations; Fort, Hu & Lakshminarayanan (2019) show that these members
end in functionally distinct modes. Here each member is planned by :func:`initscope.plan` and
drawn from its own generator stream, and the members' parameters are stacked along a new first
dim (``torch.func.stack_module_state``) so that all N run as one ``torch.func.functional_call``
under ``torch.vmap`` (PyTorch's model-ensembling recipe).
"""

from __future__ import annotations

import copy
import logging
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state

from initscope.policy import Plan, check_preset, plan

__all__ = ["Ensemble", "draw_member", "ensemble", "member_seeds"]

logger = logging.getLogger("initscope.ensembles")

_VARY_KEYS = ("preset", "rules", "scale")


def member_seeds(seed: int, k: int) -> tuple[int, int]:
    """The two 63-bit seeds of member ``k``: ``(plan, factory)``.

    Derived with NumPy's ``SeedSequence(seed, spawn_key=(k,))`` (hash-based, so the streams of
    different members are independent and member ``k``'s does not depend on how many members
    are built). The first seeds the generator the plan draws from; the second the global RNG
    while the factory builds the member (forked: the caller's RNG is left as it was).
    """
    words = np.random.SeedSequence(seed, spawn_key=(k,)).generate_state(4, dtype=np.uint32)
    a = (int(words[0]) << 31) ^ int(words[1])
    b = (int(words[2]) << 31) ^ int(words[3])
    return a, b


def _check_int(value: Any, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name}: expected an int >= {low}, got {value}")
    return int(value)


def _check_scale(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name}: expected a positive number, got {type(value).__name__}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name}: expected a finite number > 0, got {value}")
    return float(value)


def _check_vary(vary: Any) -> dict[str, list[Any]]:
    if vary is None:
        return {}
    if not isinstance(vary, Mapping):
        raise TypeError(
            "vary: expected a mapping such as {'scale': [0.5, 1.0, 2.0]}, got "
            f"{type(vary).__name__}"
        )
    out: dict[str, list[Any]] = {}
    for key, values in vary.items():
        if key not in _VARY_KEYS:
            raise ValueError(f"vary: unknown key {key!r}; valid keys: {', '.join(_VARY_KEYS)}")
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise TypeError(f"vary[{key!r}]: expected a non-empty list, one value per member")
        values = list(values)
        if key == "preset":
            values = [check_preset(v) for v in values]
        elif key == "scale":
            values = [_check_scale(v, f"vary['scale'][{i}]") for i, v in enumerate(values)]
        elif key == "rules":
            for i, r in enumerate(values):
                if r is not None and (isinstance(r, (str, bytes)) or not isinstance(r, Sequence)):
                    raise TypeError(f"vary['rules'][{i}]: expected a list of rules or None")
        out[key] = values
    return out


class _Spec:
    """How member ``k`` is drawn: preset, rules, scale (``vary`` cycles over members)."""

    def __init__(
        self, preset: str, rules: Any, scale: float, vary: dict[str, list[Any]], k: int
    ) -> None:
        def pick(key: str, default: Any) -> tuple[Any, int]:
            values = vary.get(key)
            if values is None:
                return default, -1
            return values[k % len(values)], k % len(values)

        self.preset, _ = pick("preset", preset)
        self.rules, self.rules_index = pick("rules", rules)
        self.scale, _ = pick("scale", scale)

    @property
    def plan_key(self) -> tuple[str, int]:
        return self.preset, self.rules_index


def _build(factory_or_model: nn.Module | Callable[[], nn.Module], factory_seed: int) -> nn.Module:
    if isinstance(factory_or_model, nn.Module):
        return copy.deepcopy(factory_or_model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(factory_seed)
        model = factory_or_model()
    if not isinstance(model, nn.Module):
        raise TypeError(f"factory_or_model: the factory returned {type(model).__name__}, not an "
                        "nn.Module")  # fmt: skip
    return model


def _scale_(model: nn.Module, p: Plan, scale: float) -> None:
    """Multiply every drawn value (a choice with std > 0) by ``scale``; constants stay."""
    if scale == 1.0:
        return
    params = dict(model.named_parameters())
    with torch.no_grad():
        for e in p:
            drawn = [c for c in e.choices if c.std > 0]
            if not drawn:
                continue
            t = params[e.path]
            if any(c.rows is None for c in drawn):
                t.mul_(scale)
                continue
            rows = sorted({r for c in drawn for r in range(*c.rows)})  # type: ignore[misc]
            t[rows] *= scale


def _draw(
    factory_or_model: nn.Module | Callable[[], nn.Module],
    k: int,
    seed: int,
    spec: _Spec,
    plans: dict[tuple[str, int], Plan],
    example_input: Any,
    data: Any,
) -> tuple[nn.Module, Plan]:
    plan_seed, factory_seed = member_seeds(seed, k)
    model = _build(factory_or_model, factory_seed)
    key = spec.plan_key
    if key not in plans:
        plans[key] = plan(
            model, spec.preset, example_input=example_input, rules=spec.rules, data=data
        )
    p = plans[key]
    first = next(iter(model.parameters()), None)
    device = first.device if first is not None else torch.device("cpu")
    g = torch.Generator(device=device).manual_seed(plan_seed)
    p.apply(model, g)
    _scale_(model, p, spec.scale)
    return model, p


def _check_common(
    factory_or_model: Any, preset: Any, scale: Any, seed: Any, vary: Any
) -> tuple[str, float, int, dict[str, list[Any]]]:
    if not (isinstance(factory_or_model, nn.Module) or callable(factory_or_model)):
        raise TypeError(
            "factory_or_model: expected an nn.Module or a callable that returns one, got "
            f"{type(factory_or_model).__name__}"
        )
    return (
        check_preset(preset),
        _check_scale(scale, "scale"),
        _check_int(seed, "seed", 0),
        _check_vary(vary),
    )


def draw_member(
    factory_or_model: nn.Module | Callable[[], nn.Module],
    k: int,
    *,
    preset: str = "auto",
    rules: Sequence[Any] | None = None,
    scale: float = 1.0,
    seed: int = 0,
    example_input: Any = None,
    vary: Mapping[str, Sequence[Any]] | None = None,
    data: Any = None,
) -> nn.Module:
    """Member ``k`` of ``ensemble(factory_or_model, n, ...)`` built alone (any ``n > k``).

    With the same arguments it is bit-identical to ``ensemble(...).member(k)``: member ``k``
    draws only from its own streams (:func:`member_seeds`).
    """
    preset, scale, seed, vary_ = _check_common(factory_or_model, preset, scale, seed, vary)
    k = _check_int(k, "k", 0)
    spec = _Spec(preset, rules, scale, vary_, k)
    model, _ = _draw(factory_or_model, k, seed, spec, {}, example_input, data)
    return model


def ensemble(
    factory_or_model: nn.Module | Callable[[], nn.Module],
    n: int,
    *,
    preset: str = "auto",
    rules: Sequence[Any] | None = None,
    scale: float = 1.0,
    seed: int = 0,
    example_input: Any = None,
    vary: Mapping[str, Sequence[Any]] | None = None,
    data: Any = None,
    vectorize: bool = True,
) -> Ensemble:
    """``n`` members whose parameters are drawn independently by the plan, stacked for one
    vectorized forward.

    Member ``k`` is built (a fresh ``factory()``, or a deep copy of the model), planned with
    :func:`initscope.plan` (``preset``, ``rules``, ``example_input``, ``data`` as there; one plan
    per distinct preset and rules, shared by the members that use it) and drawn from its own
    generator, seeded from ``(seed, k)`` (:func:`member_seeds`). So the same ``seed`` gives
    bit-identical members, and member ``k`` does not depend on ``n`` (:func:`draw_member` builds
    it alone). The factory runs under a forked global RNG seeded per member: what it draws
    (parameters no rule covers) is reproducible too, and the caller's RNG is left as it was.

    Args:
        factory_or_model: a callable ``() -> nn.Module`` or a model to copy.
        n: the number of members (>= 1).
        preset, rules, example_input, data: as in :func:`initscope.plan`.
        scale: multiplies every drawn value (choices with std > 0; constants such as zero biases
            or unit norm weights stay), so the std of every drawn tensor is ``scale`` times the
            plan's.
        seed: a non-negative int; the root of every member's streams.
        vary: per-member overrides, cycled: ``{"scale": [0.5, 1, 2]}`` gives member ``k`` the
            scale ``[0.5, 1, 2][k % 3]``; keys ``"preset"``, ``"rules"``, ``"scale"``.
        vectorize: run the members under ``torch.vmap`` (else always a Python loop).

    Returns:
        An :class:`Ensemble`: ``ens(x)`` has shape ``(n, ...)``, ``ens.member(k)`` is member ``k``
        as an ordinary module, ``ens.parameters()`` are the stacked tensors an optimizer trains.

    Raises:
        TypeError, ValueError: bad arguments (named), before anything is built.
    """
    preset, scale, seed, vary_ = _check_common(factory_or_model, preset, scale, seed, vary)
    n = _check_int(n, "n", 1)
    if not isinstance(vectorize, bool):
        raise TypeError(f"vectorize: expected a bool, got {type(vectorize).__name__}")
    plans: dict[tuple[str, int], Plan] = {}
    members, member_plans, specs = [], [], []
    for k in range(n):
        spec = _Spec(preset, rules, scale, vary_, k)
        model, p = _draw(factory_or_model, k, seed, spec, plans, example_input, data)
        members.append(model)
        member_plans.append(p)
        specs.append(spec)
    ens = Ensemble(members, vectorize=vectorize)
    ens.plans = member_plans
    ens.presets = [s.preset for s in specs]
    ens.scales = [s.scale for s in specs]
    ens.seed = seed
    return ens


def _key(name: str) -> str:
    return name.replace(".", "__")


def _stack(outputs: list[Any]) -> Any:
    """Stack per-member outputs on a new first dim, through tuples, lists and dicts."""
    first = outputs[0]
    if isinstance(first, Tensor):
        return torch.stack(outputs)
    if isinstance(first, (tuple, list)):
        return type(first)(_stack(list(parts)) for parts in zip(*outputs, strict=True))
    if isinstance(first, Mapping):
        return {key: _stack([o[key] for o in outputs]) for key in first}
    raise TypeError(f"cannot stack member outputs of type {type(first).__name__}")


class Ensemble(nn.Module):
    """``n`` members of one architecture, their parameters and buffers stacked on a first dim.

    ``ens(*args, **kwargs)`` runs every member on the same inputs and returns the outputs
    stacked, ``(n, ...)``: one ``torch.func.functional_call`` under ``torch.vmap``
    (``randomness="different"``: each member its own dropout mask). Gradients reach the stacked
    parameters (``ens.parameters()``): summing the members' losses and stepping an optimizer
    trains every member as if alone (each member's loss depends only on its own slice).

    A model ``vmap`` cannot run (data-dependent Python control flow, ``.item()``, in-place updates
    of unstacked state) falls back to a loop over the members on the same stacked tensors: a
    ``UserWarning`` and a log record say so, ``ens.vectorized`` is then ``False`` and
    ``ens.fallback_reason`` holds vmap's error. The decision is made on the first call in each
    mode (train, eval); buffers changed by the failed attempt are restored first.

    Attributes:
        n: the number of members.
        plans, presets, scales, seed: how :func:`ensemble` drew each member (empty / None
            when built from models).
    """

    def __init__(self, members: Sequence[nn.Module], *, vectorize: bool = True) -> None:
        if isinstance(members, nn.Module) or not isinstance(members, Sequence):
            raise TypeError("members: expected a list of nn.Module")
        if not members:
            raise ValueError("members: expected at least one model")
        for i, m in enumerate(members):
            if not isinstance(m, nn.Module):
                raise TypeError(f"members[{i}]: expected an nn.Module, got {type(m).__name__}")
        ref = {n: (t.shape, t.dtype) for n, t in _tensors(members[0])}
        if not any(True for _ in members[0].parameters()):
            raise ValueError("members: the model has no parameters to stack")
        for i, m in enumerate(members[1:], 1):
            got = {n: (t.shape, t.dtype) for n, t in _tensors(m)}
            if got != ref:
                diff = sorted(set(got.items()) ^ set(ref.items()), key=str)[:3]
                raise ValueError(
                    f"members[{i}]: its parameters/buffers differ from member 0's: {diff}"
                )
        super().__init__()
        params, buffers = stack_module_state(list(members))
        persistent = set(members[0].state_dict())
        self._param_names = list(params)
        self._buffer_names = list(buffers)
        keys = [_key(n) for n in (*self._param_names, *self._buffer_names)]
        if len(set(keys)) != len(keys):
            raise ValueError("members: parameter names collide once '.' is replaced by '__'")
        for name, t in params.items():
            self.register_parameter(_key(name), nn.Parameter(t, requires_grad=t.requires_grad))
        for name, t in buffers.items():
            self.register_buffer(_key(name), t, persistent=name in persistent)
        # The structure the stacked tensors are substituted into; not a registered submodule,
        # so its own tensors are neither parameters of the ensemble nor saved with it.
        self.__dict__["_template"] = copy.deepcopy(members[0])
        self.n = len(members)
        self.vectorize = vectorize
        self.fallback_reason: str | None = None
        self._vmap_ok: dict[bool, bool] = {}
        self.plans: list[Plan] = []
        self.presets: list[str] = []
        self.scales: list[float] = []
        self.seed: int | None = None
        self.train(members[0].training)

    # ----------------------------------------------------------------- access

    def __len__(self) -> int:
        return self.n

    def stacked_parameters(self) -> dict[str, Tensor]:
        """``{member parameter name: stacked tensor (n, *shape)}`` (the ensemble's parameters)."""
        return {n: getattr(self, _key(n)) for n in self._param_names}

    def stacked_buffers(self) -> dict[str, Tensor]:
        """``{member buffer name: stacked tensor (n, *shape)}``."""
        return {n: getattr(self, _key(n)) for n in self._buffer_names}

    def member(self, k: int) -> nn.Module:
        """Member ``k`` as an ordinary module: a copy holding its current values (detached,
        ``requires_grad`` as in the members, mode as the ensemble's)."""
        k = _check_int(k, "k", 0)
        if k >= self.n:
            raise ValueError(f"k: expected 0 <= k < {self.n}, got {k}")
        m = copy.deepcopy(self._template)
        device = next(iter(self.parameters())).device
        m.to(device)
        with torch.no_grad():
            for name, t in m.named_parameters():
                t.copy_(getattr(self, _key(name))[k])
            for name, t in m.named_buffers():
                t.copy_(getattr(self, _key(name))[k])
        return m.train(self.training)

    def members(self) -> list[nn.Module]:
        """Every member as an ordinary module (see :meth:`member`)."""
        return [self.member(k) for k in range(self.n)]

    @property
    def vectorized(self) -> bool | None:
        """Whether the last forward in the current mode ran under vmap (None: not run yet)."""
        if not self.vectorize:
            return False
        return self._vmap_ok.get(self.training)

    def train(self, mode: bool = True) -> Ensemble:
        super().train(mode)
        self._template.train(mode)
        return self

    def extra_repr(self) -> str:
        return f"n={self.n}, member={type(self._template).__name__}"

    # ----------------------------------------------------------------- forward

    def _call(self, k: int | None, args: tuple, kwargs: dict) -> Any:
        params = self.stacked_parameters()
        buffers = self.stacked_buffers()
        if k is not None:
            state = {n: t[k] for n, t in (*params.items(), *buffers.items())}
            return functional_call(self._template, state, args, kwargs)

        def one(p: dict[str, Tensor], b: dict[str, Tensor]) -> Any:
            return functional_call(self._template, (p, b), args, kwargs)

        return torch.vmap(one, randomness="different")(params, buffers)

    def _loop(self, args: tuple, kwargs: dict) -> Any:
        return _stack([self._call(k, args, kwargs) for k in range(self.n)])

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if not self.vectorize:
            return self._loop(args, kwargs)
        mode = self.training
        known = self._vmap_ok.get(mode)
        if known is False:
            return self._loop(args, kwargs)
        if known:
            return self._call(None, args, kwargs)
        saved = [(b, b.detach().clone()) for b in self.buffers()]
        try:
            out = self._call(None, args, kwargs)
        except Exception as vmap_error:  # decided below: a loop that works means vmap can't
            self._restore(saved)
            try:
                out = self._loop(args, kwargs)
            except Exception:
                self._restore(saved)
                raise
            self._vmap_ok[mode] = False
            self.fallback_reason = f"{type(vmap_error).__name__}: {vmap_error}"
            message = (
                f"initscope.ensemble: torch.vmap cannot run {type(self._template).__name__} in "
                f"{'train' if mode else 'eval'} mode ({self.fallback_reason.splitlines()[0]}); "
                f"running the {self.n} members in a loop instead"
            )
            logger.warning(message)
            warnings.warn(message, UserWarning, stacklevel=2)
            return out
        self._vmap_ok[mode] = True
        return out

    @staticmethod
    def _restore(saved: list[tuple[Tensor, Tensor]]) -> None:
        with torch.no_grad():
            for b, copy_ in saved:
                b.copy_(copy_)


def _tensors(m: nn.Module) -> list[tuple[str, Tensor]]:
    return [*m.named_parameters(), *m.named_buffers()]
