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
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from initscope._torch import check_int, check_real
from initscope.ensembles._ensemble import Ensemble
from initscope.policy import Plan, check_preset, plan

__all__ = ["draw_member", "ensemble", "member_seeds"]


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
            values = [
                check_real(f"vary['scale'][{i}]", v, low=0, strict=True)
                for i, v in enumerate(values)
            ]
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
        check_real("scale", scale, low=0, strict=True),
        check_int("seed", seed, low=0),
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
    k = check_int("k", k, low=0)
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
    n = check_int("n", n, low=1)
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
