"""Policy: which scheme, with which standard deviation and why, for every parameter of a model.

A **rule** maps a layer (:class:`initscope.graph.Layer`) and one of its parameter names to a
:class:`Choice` (or several, for blocks of rows such as LSTM gates), or to ``None`` (not mine).
A **preset** is the rule list that covers what no custom rule did:

=============== ==============================================================================
``"auto"``      what the theory says keeps the signal: ``Var(W) = g^2 / fan_in`` with ``g`` the
                exact forward gain of the activation feeding the layer (ReLU: He, exactly
                critical; SELU: LeCun), the stable critical point (weights *and* bias
                variances) in deep plain stacks of other activations, ``g^2 / sqrt(fan_in
                fan_out)`` where no activation follows, accumulating residual branch ends
                scaled by ``1/sqrt(L)``, post-norm attention scaled as DeepNet, Xavier output
``"guide"``     the selection guide literally (:func:`initscope.theory.recommend`)
``"torch"``     what PyTorch's constructors do (``reset_parameters``)
``"xavier"``    Glorot & Bengio (2010) normal everywhere
``"he"``        He et al. (2015) normal everywhere (the slope of a following leaky ReLU counts)
``"lecun"``     LeCun et al. (1998) normal everywhere
``"orthogonal"`` Saxe et al. (2014), gain = the exact forward gain of the following activation
``"gpt2"``      Radford et al. (2019): N(0, 0.02), residual projections 0.02 / sqrt(2 n_layer)
``"fixup"``     Zhang et al. (2019): branch layers He * L^(-1/(2m-2)), branch ends and classifier 0
``"lsuv"``      Mishkin & Matas (2016): orthogonal, then :func:`initscope.lsuv.lsuv` on ``data``
=============== ==============================================================================

Custom rules come first: ``(selector, scheme)``, ``(selector, scheme, kwargs)`` or a callable
``(layer, param_name) -> Choice | Sequence[Choice] | None``; a selector is a module type (or a
tuple of types) or a glob on the module path or the parameter path (``"*.head"``,
``"blocks.*.mlp.fc2.weight"``).
"""

from __future__ import annotations

import difflib
import fnmatch
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from torch import nn

from initscope._torch import check_real
from initscope.graph import Layer
from initscope.policy._choice import Choice, accepted, applicable, choice, scheme_name
from initscope.policy.presets import PRESETS, PresetFn, decide, describe
from initscope.policy.presets.base import untouched_note

__all__ = [
    "PRESETS",
    "Choice",
    "Preset",
    "PresetFn",
    "Rule",
    "check_preset",
    "choice",
    "choose",
]

Preset = Literal[
    "auto", "guide", "torch", "xavier", "he", "lecun", "orthogonal", "gpt2", "fixup", "lsuv"
]
"""Preset names, for ``initialize(model, preset=...)`` and the CLI's ``--preset`` / ``--init``:
the keys of :data:`PRESETS` (name -> preset function; iterating it gives the names)."""

Selector = type | tuple | str
Rule = tuple | Callable[[Layer, str], Any]


def check_preset(preset: Any) -> str:
    """``preset`` if it is one of :data:`PRESETS`; else ``ValueError`` listing them, close
    matches first (``TypeError`` for a non-string)."""
    if not isinstance(preset, str):
        raise TypeError(
            f"preset: expected one of {', '.join(PRESETS)} (str), got {type(preset).__name__}"
        )
    if preset not in PRESETS:
        close = difflib.get_close_matches(preset, PRESETS, n=3, cutoff=0.5)
        rest = [p for p in PRESETS if p not in close]
        raise ValueError(
            f"preset: unknown preset {preset!r}; valid presets: {', '.join(close + rest)}"
        )
    return preset


# ----------------------------------------------------------------------------- custom rules


@dataclass
class _NamedRule:
    index: int
    selector: Selector
    raw: str  # the scheme as written ("he")
    scheme: str  # its SCHEMES name ("kaiming_normal")
    kwargs: dict[str, Any]
    matched: bool = False
    cannot: list[str] = field(default_factory=list)  # parameters it names but cannot fill

    def label(self) -> str:
        sel = self.selector
        if isinstance(sel, type):
            sel = sel.__name__
        elif isinstance(sel, tuple):
            sel = "(" + ", ".join(t.__name__ for t in sel) + ")"
        else:
            sel = repr(sel)
        args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
        return f"rule {self.index} ({sel} -> {self.scheme}{'(' + args + ')' if args else ''})"

    def selects(self, layer: Layer, param: str) -> bool | None:
        """True: the module and this parameter; None: the module but not the parameter."""
        sel = self.selector
        if isinstance(sel, str):
            if any(fnmatch.fnmatchcase(n, sel) for n in _names(layer, param)):
                return True
            if any(fnmatch.fnmatchcase(m, sel) for m in _owners(layer, param)):
                return True
            if any(fnmatch.fnmatchcase(n, sel) for p in layer.params for n in _names(layer, p)):
                return None
            return False
        return isinstance(layer.module, sel)

    def __call__(self, layer: Layer, param: str) -> Choice | None:
        hit = self.selects(layer, param)
        if hit is False:
            return None
        self.matched = True
        if hit is None:
            return None
        tensor = getattr(layer.module, param)
        if not applicable(self.scheme, tensor.dim()):
            named = isinstance(self.selector, str) and any(
                fnmatch.fnmatchcase(n, self.selector) for n in _names(layer, param)
            )
            if named:  # the rule names this parameter: say that it cannot fill it
                self.cannot.append(f"{_names(layer, param)[0]} {tuple(tensor.shape)}")
            return None
        kwargs = dict(self.kwargs)
        if (
            self.raw in ("he", "he_normal", "he_uniform", "kaiming_normal", "kaiming_uniform")
            and "nonlinearity" not in kwargs
            and layer.activation is not None
        ):
            act = layer.activation
            if act.name == "relu":
                kwargs["nonlinearity"] = "relu"
            elif act.name == "leaky_relu":
                kwargs["nonlinearity"] = "leaky_relu"
                kwargs.setdefault("a", act.param)
        return choice(layer, param, self.scheme, why=self.label(), **kwargs)


_NEEDS = {
    "eye": "needs a 2-dim matrix",
    "sparse": "needs a 2-dim matrix",
    "dirac": "needs a 3- to 5-dim convolution kernel",
    "delta_orthogonal": "needs a 3- to 5-dim convolution kernel",
}


def _names(layer: Layer, param: str) -> tuple[str, ...]:
    """Every name of a parameter: under this layer's path, and its tied aliases."""
    full = f"{layer.path}.{param}" if layer.path else param
    return (full, *layer.param_aliases.get(param, ()))


def _owners(layer: Layer, param: str) -> tuple[str, ...]:
    """The module paths holding a parameter (several for tied weights)."""
    others = tuple(n.rpartition(".")[0] for n in layer.param_aliases.get(param, ()))
    return (layer.path, *others)


def compile_rules(rules: Sequence[Rule] | None) -> list[Callable[[Layer, str], Any]]:
    """Check custom rules (before any tensor is touched) and turn them into callables."""
    if rules is None:
        return []
    if isinstance(rules, (str, bytes)) or not isinstance(rules, Sequence):
        raise TypeError(
            "rules: expected a list of (selector, scheme[, kwargs]) tuples or "
            f"callables, got {type(rules).__name__}"
        )
    out: list[Callable[[Layer, str], Any]] = []
    for i, rule in enumerate(rules):
        if callable(rule) and not isinstance(rule, tuple):
            out.append(rule)
            continue
        if not isinstance(rule, tuple) or len(rule) not in (2, 3):
            raise TypeError(
                f"rules[{i}]: expected (selector, scheme) or (selector, scheme, "
                f"kwargs) or a callable, got {rule!r}"
            )
        selector, scheme, *rest = rule
        _check_selector(selector, i)
        name = scheme_name(scheme, f"rules[{i}]")
        kwargs = rest[0] if rest else {}
        if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
            raise TypeError(
                f"rules[{i}]: kwargs must be a dict of keyword arguments, got {kwargs!r}"
            )
        allowed = accepted(name) - {"tensor", "fans", "generator"}
        unknown = sorted(set(kwargs) - allowed)
        if unknown:
            raise ValueError(
                f"rules[{i}]: {name} takes no argument(s) {', '.join(unknown)}; "
                f"it takes {', '.join(sorted(allowed)) or 'none'}"
            )
        _check_numbers(kwargs, f"rules[{i}]", name)
        out.append(_NamedRule(i, selector, scheme, name, dict(kwargs)))
    return out


_NUMERIC = frozenset({"gain", "std", "mean", "a", "b", "val", "scale", "sparsity", "param"})


def _check_numbers(kwargs: Mapping[str, Any], where: str, scheme: str) -> None:
    """Numeric scheme arguments must be finite real numbers (checked before any tensor is
    touched: a NaN gain would write NaN weights)."""
    for key, value in kwargs.items():
        if key in _NUMERIC:
            check_real(f"{where}: {scheme} argument {key}", value)


def _check_selector(selector: Any, i: int) -> None:
    def is_module_type(t: Any) -> bool:
        return isinstance(t, type) and issubclass(t, nn.Module)

    if isinstance(selector, str) or is_module_type(selector):
        return
    if isinstance(selector, tuple) and selector and all(is_module_type(t) for t in selector):
        return
    raise TypeError(
        f"rules[{i}]: selector must be an nn.Module subclass, a tuple of them or a "
        f"glob on the module/parameter path (str), got {selector!r}"
    )


# ----------------------------------------------------------------------------- choosing


@dataclass(frozen=True)
class Decision:
    """The choices for one parameter (empty: untouched, with ``note`` saying why)."""

    path: str
    layer: Layer
    name: str
    shape: tuple[int, ...]
    choices: tuple[Choice, ...]
    note: str = ""


def _as_choices(result: Any, where: str) -> tuple[Choice, ...] | None:
    if result is None:
        return None
    if isinstance(result, Choice):
        return (result,)
    if isinstance(result, Sequence) and result and all(isinstance(c, Choice) for c in result):
        return tuple(result)
    raise TypeError(f"{where} returned {result!r}; expected a Choice, a list of Choices or None")


def choose(
    model: nn.Module,
    layers: Sequence[Layer],
    preset: str,
    rules: Sequence[Rule] | None = None,
    zero_init_residual: bool = False,
) -> list[Decision]:
    """Decide every parameter of ``model``: custom rules first, then ``zero_init_residual``,
    then the preset. Warns for rule selectors that match nothing and for untouched parameters."""
    preset = check_preset(preset)
    compiled = compile_rules(rules)
    facts = describe(model, layers)
    names = {id(p): n for n, p in model.named_parameters()}
    seen: set[int] = set()
    decisions: list[Decision] = []
    for layer in layers:
        for name in layer.params:
            p = getattr(layer.module, name)
            if id(p) in seen or id(p) not in names:
                continue
            seen.add(id(p))
            shape = tuple(p.shape)
            picked: tuple[Choice, ...] | None = None
            for k, rule in enumerate(compiled):
                picked = _as_choices(rule(layer, name), f"rules[{k}]")
                if picked is not None:
                    break
            if picked is None:
                picked = _as_choices(
                    decide(facts, preset, layer, name, zero_init_residual), f"preset {preset!r}"
                )
            note = "" if picked else untouched_note(preset, layer, name)
            decisions.append(Decision(names[id(p)], layer, name, shape, picked or (), note))
    for rule in compiled:
        if isinstance(rule, _NamedRule) and not rule.matched:
            warnings.warn(
                f"initscope: {rule.label()} matched no module or parameter",
                UserWarning,
                stacklevel=3,
            )
        elif isinstance(rule, _NamedRule) and rule.cannot:
            shown = ", ".join(rule.cannot[:4]) + (", ..." if len(rule.cannot) > 4 else "")
            warnings.warn(
                f"initscope: {rule.label()} cannot apply to {shown}: {rule.scheme} "
                f"{_NEEDS.get(rule.scheme, 'needs a tensor of 2 or more dims')}; "
                f"preset {preset!r} decides {'it' if len(rule.cannot) == 1 else 'them'}",
                UserWarning,
                stacklevel=3,
            )
    return decisions
