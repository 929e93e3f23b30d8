"""Plans: every parameter's scheme, standard deviation and reason, written down before anything
is drawn; applied all or nothing.

``plan(model)`` inspects the model (:func:`initscope.graph.inspect_model`), runs the custom rules
and the preset (:mod:`initscope.policy`) and returns a :class:`Plan` without touching the model.
``plan.apply(model, generator=g)`` first runs every check and every step on ``meta`` tensors
(:mod:`initscope.policy._apply`), so that a failure leaves the model bit-identical without a copy
of it, then draws every tensor in plan order. ``initialize(model, ...)`` does both. A plan
serializes to JSON (``to_dict`` / ``from_dict``): applying a loaded plan with the same generator
seed gives bit-identical weights.
"""

from __future__ import annotations

import io
import json
import logging
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from initscope.calibration import lsuv
from initscope.graph import inspect_model
from initscope.init import Fans, fans, get_scheme
from initscope.policy._apply import (
    agree,
    agreement_needed,
    check_materializable,
    materialize,
    rehearse,
    write,
)
from initscope.policy._rules import PRESETS, Choice, Rule, check_preset, choose

__all__ = ["Entry", "Plan", "initialize", "plan"]

logger = logging.getLogger(__name__)

_FORMAT = "initscope.plan"
_VERSION = 1


@dataclass(frozen=True)
class Entry:
    """The plan for one parameter.

    Attributes:
        path: the parameter's name in ``model.named_parameters()``.
        module: the path of the module holding it; ``type`` its class name.
        shape: the parameter's shape.
        fans: its layout-aware fans (:func:`initscope.fans.fans`), ``None`` below 2 dims.
        choices: the steps, in order (several for blocks of rows: LSTM gates, a padding row);
            empty when no rule covers the parameter: it stays as it is.
        note: why it is untouched (empty otherwise).
    """

    path: str
    module: str
    type: str
    shape: tuple[int, ...]
    fans: Fans | None
    choices: tuple[Choice, ...]
    note: str = ""

    @property
    def touched(self) -> bool:
        return bool(self.choices)

    @property
    def scheme(self) -> str:
        """The scheme (``"orthogonal x4"`` for identical blocks, ``"a; b"`` for mixed steps)."""
        names = [c.scheme for c in self.choices]
        if not names:
            return "untouched"
        if len(names) > 1 and len(set(names)) == 1:
            return f"{names[0]} x{len(names)}"
        return "; ".join(names)

    @property
    def std(self) -> float | None:
        """Standard deviation of the first (main) step; ``None`` when untouched."""
        return self.choices[0].std if self.choices else None

    @property
    def formula(self) -> str:
        return self._joined("formula")

    @property
    def why(self) -> str:
        return self._joined("why") if self.choices else self.note

    def _joined(self, attr: str) -> str:
        texts = [getattr(c, attr) for c in self.choices]
        if len(texts) > 1 and len(set(texts)) == 1 and all(c.rows for c in self.choices):
            return f"each of {len(texts)} row blocks: {texts[0]}"
        out: list[str] = []
        for c, text in zip(self.choices, texts, strict=True):
            text = _with_rows(c, text)
            if text not in out:
                out.append(text)
        return "; ".join(out)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "module": self.module,
            "type": self.type,
            "shape": list(self.shape),
            "fans": None if self.fans is None else self.fans.to_dict(),
            "choices": [c.to_dict() for c in self.choices],
            "note": self.note,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Entry:
        f = d.get("fans")
        return cls(
            path=str(d["path"]),
            module=str(d.get("module", "")),
            type=str(d.get("type", "")),
            shape=tuple(int(s) for s in d["shape"]),
            fans=None
            if f is None
            else Fans(int(f["fan_in"]), int(f["fan_out"]), int(f.get("receptive_field", 1))),
            choices=tuple(Choice.from_dict(c) for c in d.get("choices", [])),
            note=str(d.get("note", "")),
        )


def _with_rows(c: Choice, text: str) -> str:
    return text if c.rows is None else f"[{c.rows[0]}:{c.rows[1]}] {text}"


class Plan:
    """An ordered list of :class:`Entry`, one per parameter, in execution order.

    ``print(plan)`` shows a table (parameter, shape, fans, scheme, std, formula, why);
    ``plan["fc1.weight"]`` one entry; ``plan.untouched`` the parameters no rule covers.
    With ``preset="lsuv"`` applying also runs :func:`initscope.lsuv.lsuv` on ``data`` and keeps
    its result in ``plan.lsuv_result``.
    """

    def __init__(
        self,
        entries: Sequence[Entry],
        *,
        preset: str,
        model: str = "",
        zero_init_residual: bool = False,
        data: Any = None,
    ) -> None:
        self.entries = list(entries)
        self.preset = preset
        self.model = model
        self.zero_init_residual = zero_init_residual
        self.data = data
        self.lsuv_result: Any = None

    @property
    def needs_data(self) -> bool:
        """Applying runs LSUV, which needs a batch."""
        return self.preset == "lsuv"

    @property
    def untouched(self) -> list[Entry]:
        return [e for e in self.entries if not e.touched]

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries)

    def __getitem__(self, path: str) -> Entry:
        for e in self.entries:
            if e.path == path:
                return e
        raise KeyError(f"no parameter {path!r} in the plan")

    def __repr__(self) -> str:
        return (
            f"Plan(preset={self.preset!r}, model={self.model!r}, {len(self.entries)} "
            f"parameters, {len(self.untouched)} untouched)"
        )

    # ------------------------------------------------------------------ serialization

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict; :meth:`from_dict` rebuilds the plan (without ``data``)."""
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "preset": self.preset,
            "model": self.model,
            "zero_init_residual": self.zero_init_residual,
            "entries": [e.to_dict() for e in self.entries],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Plan:
        """Rebuild a plan from :meth:`to_dict` output (e.g. ``json.load``)."""
        if not isinstance(d, Mapping) or d.get("format") != _FORMAT:
            raise ValueError(f"d: not an initscope plan (expected format {_FORMAT!r})")
        if d.get("version") != _VERSION:
            raise ValueError(
                f"d: unsupported plan version {d.get('version')!r}; "
                f"this initscope reads version {_VERSION}"
            )
        preset = str(d.get("preset", ""))
        if preset not in PRESETS:
            raise ValueError(f"d: unknown preset {preset!r}; valid presets: {', '.join(PRESETS)}")
        return cls(
            [Entry.from_dict(e) for e in d.get("entries", [])],
            preset=preset,
            model=str(d.get("model", "")),
            zero_init_residual=bool(d.get("zero_init_residual", False)),
        )

    def to_json(self, path: str | Path | None = None) -> str:
        """The plan as JSON text; also written to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    # ------------------------------------------------------------------ applying

    def validate(self, model: nn.Module) -> dict[str, nn.Parameter]:
        """Check that the plan fits ``model`` (every path exists with its shape, every scheme
        and block of rows is valid); returns the parameters by path. Touches nothing."""
        if not isinstance(model, nn.Module):
            raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
        params = dict(model.named_parameters())
        for e in self.entries:
            p = params.get(e.path)
            if p is None:
                raise ValueError(
                    f"plan does not fit {type(model).__name__}: it has no parameter "
                    f"{e.path!r} (plan made for {self.model or 'another model'})"
                )
            if tuple(p.shape) != e.shape:
                raise ValueError(
                    f"plan does not fit {type(model).__name__}: {e.path} has shape "
                    f"{tuple(p.shape)}, the plan says {e.shape}"
                )
            for c in e.choices:
                get_scheme(c.scheme)
                if c.rows is not None and not 0 <= c.rows[0] < c.rows[1] <= e.shape[0]:
                    raise ValueError(f"plan entry {e.path}: rows {c.rows} outside 0..{e.shape[0]}")
        return params

    def apply(
        self,
        model: nn.Module,
        generator: torch.Generator | None = None,
        *,
        data: Any = None,
        seed: int | None = None,
        layout_invariant: bool = False,
        device: torch.device | str | None = None,
    ) -> Plan:
        """Initialize ``model`` as planned, all or nothing, without a copy of it; returns the plan.

        First everything that can fail is checked, before the first write: the plan against the
        model (paths, shapes), each parameter's kind and device, the generator's device, and
        every step run once on a ``meta`` tensor of the parameter's shape and dtype (no memory,
        no random numbers). Then the steps write in plan order, drawing from ``generator``
        (torch's default generator when ``None``): the values are the same as a plain sequence
        of scheme calls. A failure in the checks leaves the model bit-identical; the write phase
        itself keeps no copy (an interrupt or an out-of-memory error there leaves the parameters
        written so far with their new values). ``preset="lsuv"`` is the exception: its data pass
        can fail on the batch, so the parameters and buffers are saved before it and restored on
        error.

        Args:
            model: the model the plan was made for.
            generator: the generator to draw from (on the parameters' device).
            data: the batch for ``preset="lsuv"`` (default: the one given to :func:`plan`).
            seed: with ``layout_invariant=True``, the key of the counter-based generator;
                otherwise shorthand for a fresh ``torch.Generator`` seeded with it.
            layout_invariant: draw element ``i`` of parameter ``path`` from Philox-4x32-10
                keyed by ``(seed, path, step)`` at counter ``i`` (:mod:`initscope.init.counter`):
                bit-identical values for any sharding (DTensor, FSDP2), world size, device
                placement or order. Required for DTensor parameters.
            device: materialize a model built on the ``meta`` device there first
                (``model.to_empty``), after every check has passed; BatchNorm running
                statistics are reset, every parameter must be in the plan.
        """
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(
                f"generator: expected a torch.Generator or None, got {type(generator).__name__}"
            )
        if not isinstance(layout_invariant, bool):
            raise TypeError(
                f"layout_invariant: expected a bool, got {type(layout_invariant).__name__}"
            )
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"seed: expected an int or None, got {type(seed).__name__}")
        if seed is not None and generator is not None:
            raise ValueError("pass generator= or seed=, not both")
        if layout_invariant and seed is None:
            raise ValueError("layout_invariant=True needs seed= (an int): the generator's key")
        if layout_invariant and self.needs_data:
            raise ValueError(
                "layout_invariant=True with preset 'lsuv': LSUV's rescaling depends on the "
                "data pass, not only on the random seed; use another preset"
            )
        params: Mapping[str, torch.Tensor] = self.validate(model)
        data = self.data if data is None else data
        if self.needs_data and data is None:
            raise ValueError(
                "preset 'lsuv' needs data=: a batch the model accepts, to measure "
                "each layer's output variance"
            )
        sharded = agreement_needed(params.values())
        try:
            if device is not None:
                device = check_materializable(model, self.entries, device)
            if seed is not None and not layout_invariant:
                where = device or next((p.device for p in params.values()), torch.device("cpu"))
                generator = torch.Generator(where).manual_seed(seed)
            rehearse(self.entries, params, generator, layout_invariant, device)
        except Exception as error:
            if sharded:
                agree(error)
            raise
        if sharded:
            agree(None)
        if device is not None:
            params = materialize(model, device)
        saved = (
            [(t, t.detach().clone()) for t in (*model.parameters(), *model.buffers())]
            if self.needs_data
            else []
        )
        try:
            write(self.entries, params, generator, seed if layout_invariant else None)
            if self.needs_data:
                self.lsuv_result = lsuv(model, data, generator=generator)
        except BaseException:
            with torch.no_grad():
                for t, copy in saved:
                    t.copy_(copy)
            raise
        logger.info(
            "initscope: applied %r to %s (%d parameters)",
            self.preset,
            type(model).__name__,
            sum(e.touched for e in self.entries),
        )
        return self

    # ------------------------------------------------------------------ views

    def rows(self, summarize: bool = True) -> list[tuple[str, Entry, int]]:
        """The rows of the printed plan: ``(label, entry, count)``. With ``summarize``, the
        entries of repeated layers (paths equal but for their integer indices, with the same
        shape, fans, scheme, std and formula, and reasons equal but for their numbers) share
        one row, at the first one's place, labelled ``blocks.[0-49].fc.weight``."""
        if not summarize:
            return [(e.path, e, 1) for e in self.entries]
        groups: dict[tuple, list[Entry]] = {}
        for e in self.entries:
            key = (
                _INDEX.sub("*", e.path),
                e.shape,
                e.fans,
                e.scheme,
                e.std,
                e.formula,
                _NUMBER.sub("#", e.why),
                e.touched,
            )
            groups.setdefault(key, []).append(e)
        out = []
        for members in groups.values():
            first = members[0]
            out.append((_label(members) if len(members) > 1 else first.path, first, len(members)))
        order = {id(e): i for i, e in enumerate(self.entries)}
        return sorted(out, key=lambda r: order[id(r[1])])

    def table(self, summarize: bool = True) -> Any:
        """A ``rich.table.Table`` of the plan (rich is imported here, not at import time);
        repeated layers share a row unless ``summarize=False`` (see :meth:`rows`)."""
        from rich.table import Table
        from rich.text import Text

        title = f"initscope plan: preset {self.preset!r}" + (
            f" for {self.model}" if self.model else ""
        )
        t = Table(title=title, show_lines=False)
        for col, kw in (
            ("parameter", {"no_wrap": True}),
            ("shape", {}),
            ("fans in/out", {}),
            ("scheme", {}),
            ("std", {"justify": "right"}),
            ("formula", {}),
            ("why", {"ratio": 1}),
        ):
            t.add_column(col, **kw)
        rows = self.rows(summarize)
        if len(rows) < len(self.entries):
            t.caption = Text(
                f"{len(self.entries)} parameters in {len(rows)} rows: [i-j] stands for repeated "
                "layers planned alike (plan.table(summarize=False) lists each)"
            )
        for label, e, count in rows:
            shape = "x".join(map(str, e.shape)) or "scalar"
            f = "" if e.fans is None else f"{e.fans.fan_in}/{e.fans.fan_out}"
            std = "" if e.std is None else f"{e.std:.4g}"
            why = e.why if count == 1 else f"x{count}, as {e.path}: {e.why}"
            cells = (label, shape, f, e.scheme, std, e.formula, why)
            t.add_row(*(Text(c) for c in cells), style=None if e.touched else "yellow")
        return t

    def __str__(self) -> str:
        from rich.console import Console

        buf = io.StringIO()
        Console(file=buf, width=160, color_system=None, force_terminal=False).print(self.table())
        return buf.getvalue().rstrip("\n")


_INDEX = re.compile(r"(?<![^.])\d+(?![^.])")  # an integer path component
_NUMBER = re.compile(r"\d+")


def _label(members: Sequence[Entry]) -> str:
    """``blocks.[0-49].fc.weight`` for paths that differ in their integer components."""
    split = [e.path.split(".") for e in members]
    out = []
    for k, part in enumerate(split[0]):
        values = sorted({int(p[k]) for p in split}) if part.isdigit() else []
        step = values[1] - values[0] if len(values) > 1 else 0
        if len(values) <= 1:
            out.append(part)
        elif values == list(range(values[0], values[-1] + 1, step)):
            by = "" if step == 1 else f" step {step}"
            out.append(f"[{values[0]}-{values[-1]}{by}]")
        else:
            shown = ",".join(map(str, values[:6]))
            out.append(f"[{shown}{',...' if len(values) > 6 else ''}]")
    return ".".join(out)


def _entries(decisions: Sequence[Any]) -> list[Entry]:
    out = []
    for d in decisions:
        layer = d.layer
        shown = [c.fans for c in d.choices if c.fans is not None]
        try:
            f = (
                shown[0]
                if shown
                else layer.param_fans.get(d.name) or fans(layer.module, d.name)
                if len(d.shape) >= 2
                else None
            )
        except (ValueError, TypeError):
            f = None
        out.append(
            Entry(
                path=d.path,
                module=layer.path,
                type=layer.type,
                shape=d.shape,
                fans=f,
                choices=d.choices,
                note=d.note,
            )
        )
    return out


def plan(
    model: nn.Module,
    preset: str = "auto",
    *,
    example_input: Any = None,
    rules: Sequence[Rule] | None = None,
    zero_init_residual: bool = False,
    data: Any = None,
) -> Plan:
    """Decide how to initialize every parameter of ``model``; change nothing.

    Args:
        model: the model (left untouched: this is a dry run).
        preset: one of :data:`initscope.policy.PRESETS` (``"auto"``: see :mod:`initscope.policy`).
        example_input: a batch, needed when ``torch.fx`` cannot trace the model (the model is
            then run once, in a way that leaves it as it was).
        rules: custom rules, applied before the preset: ``(selector, scheme)``,
            ``(selector, scheme, kwargs)`` or a callable ``(layer, param_name) -> Choice | None``;
            a selector is a module type or a glob on the module or parameter path.
        zero_init_residual: start every residual branch at 0 (its last layer's weight, or its
            last normalization's weight when one ends the branch, as torchvision does).
        data: the batch for ``preset="lsuv"`` (required there; default ``example_input``).

    Returns:
        A :class:`Plan`. Parameters that no rule covers are listed as untouched, with a warning.

    Raises:
        ValueError: unknown preset or scheme (valid names listed), ``"lsuv"`` without ``data``,
            a model that cannot be traced without ``example_input``.
        TypeError: a bad model, rule or flag.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
    preset = check_preset(preset)
    if not isinstance(zero_init_residual, bool):
        raise TypeError(
            f"zero_init_residual: expected a bool, got {type(zero_init_residual).__name__}"
        )
    if preset == "lsuv":
        from initscope._torch import Batch

        # example_input follows the model-input convention (a tuple is model(*x)); lsuv reads a
        # tuple as (inputs, targets), so it gets the input as an explicit Batch
        data = Batch.of(example_input) if data is None and example_input is not None else data
        if data is None:
            raise ValueError(
                "preset 'lsuv' needs data=: a batch the model accepts, to measure "
                "each layer's output variance"
            )
        if example_input is None and isinstance(data, torch.Tensor):
            example_input = data
    layers = inspect_model(model, example_input)
    decisions = choose(model, layers, preset, rules, zero_init_residual)
    entries = _entries(decisions)
    untouched = [e.path for e in entries if not e.touched]
    if untouched:
        shown = ", ".join(untouched[:8]) + (", ..." if len(untouched) > 8 else "")
        warnings.warn(
            f"initscope: {len(untouched)} parameter(s) covered by no rule stay as they "
            f"are: {shown} (add rules for them)",
            UserWarning,
            stacklevel=2,
        )
    return Plan(
        entries,
        preset=preset,
        model=type(model).__name__,
        zero_init_residual=zero_init_residual,
        data=data,
    )


def initialize(
    model: nn.Module,
    preset: str = "auto",
    *,
    example_input: Any = None,
    rules: Sequence[Rule] | None = None,
    zero_init_residual: bool = False,
    data: Any = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    layout_invariant: bool = False,
    device: torch.device | str | None = None,
) -> Plan:
    """Plan (:func:`plan`) and apply (:meth:`Plan.apply`, all or nothing) in one call.

    ``initialize(model)`` reads the architecture and gives every parameter the scheme that keeps
    the signal (preset ``"auto"``); the returned :class:`Plan` says what was done and why.
    ``seed=S, layout_invariant=True`` draws from the counter-based generator (the same values
    for any sharding, world size or device); ``device="cpu"`` (or any device) materializes a
    model built on ``meta`` (see ``docs/scale.md``).
    """
    p = plan(
        model,
        preset,
        example_input=example_input,
        rules=rules,
        zero_init_residual=zero_init_residual,
        data=data,
    )
    return p.apply(model, generator, seed=seed, layout_invariant=layout_invariant, device=device)
