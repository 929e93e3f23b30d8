"""Function-preserving widening (Net2WiderNet: Chen, Goodfellow & Shlens 2016; bert2BERT's
function-preserving initialization of wider transformers: Chen et al. 2022)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_flatten

from initscope._torch import check_int, check_real
from initscope.grow._result import Growth
from initscope.grow._trace import (
    GrowthError,
    Units,
    graph_nodes,
    is_transposed_linear,
    out_width,
    trace_units,
)

__all__ = ["widen"]


def check_generator(generator: Any) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator: expected a torch.Generator or None, got {type(generator).__name__}"
        )


def submodule(model: nn.Module, path: Any, what: str) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
    if not isinstance(path, str):
        raise TypeError(f"{what}: expected a module path (str), got {type(path).__name__}")
    modules = dict(model.named_modules())
    if path not in modules or path == "":
        near = [p for p in modules if p and (p.startswith(path) or path.startswith(p))][:5]
        hint = f" (nearby: {', '.join(near)})" if near else ""
        raise ValueError(f"{what}: {type(model).__name__} has no submodule {path!r}{hint}")
    return modules[path]


def check_untied(model: nn.Module, paths: list[str], op: str) -> None:
    """Growth replaces parameters: one shared with a module outside ``paths`` would split."""
    owners: dict[int, set[str]] = {}
    for p, m in model.named_modules(remove_duplicate=False):
        for t in m.parameters(recurse=False):
            owners.setdefault(id(t), set()).add(p)
    modules = dict(model.named_modules())
    for p in paths:
        for name, t in modules[p].named_parameters(recurse=False):
            others = owners[id(t)] - {p}
            if others:
                raise GrowthError(
                    f"cannot {op}: {p}.{name} is shared with {', '.join(sorted(others))} "
                    "(tied weights)"
                )


@torch.no_grad()
def run_outputs(model: nn.Module, example_input: Any) -> list[torch.Tensor]:
    """The model's floating outputs on ``example_input``, in eval mode, leaving no trace (modes
    and the random state restored; nothing is updated in eval mode)."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        with torch.random.fork_rng(devices=[]):
            model.eval()
            if isinstance(example_input, dict):
                out = model(**example_input)
            elif isinstance(example_input, (tuple, list)):
                out = model(*example_input)
            else:
                out = model(example_input)
    finally:
        for m, mode in modes:
            m.training = mode
    leaves = out.to_tuple() if hasattr(out, "to_tuple") else out
    flat = tree_flatten(leaves)[0]
    return [t for t in flat if isinstance(t, torch.Tensor) and t.is_floating_point()]


def relative_change(before: list[torch.Tensor], after: list[torch.Tensor]) -> float:
    """``max |after - before| / max |before|`` over the outputs (inf on a shape change)."""
    worst = 0.0
    for a, b in zip(before, after, strict=True):
        if a.shape != b.shape:
            return math.inf
        scale = float(a.abs().max()) if a.numel() else 0.0
        diff = float((b.double() - a.double()).abs().max()) if a.numel() else 0.0
        worst = max(worst, diff / max(scale, 1e-30))
    return worst


class Writer:
    """Replacements collected first, written together, undone together."""

    def __init__(self) -> None:
        self.todo: list[tuple[nn.Module, str, str, Any]] = []  # module, slot, name, value
        self.undo: list[tuple[nn.Module, str, str, Any]] = []

    def param(self, m: nn.Module, name: str, value: torch.Tensor) -> None:
        old = m._parameters[name]
        assert old is not None
        p = nn.Parameter(value.detach().to(old.dtype), requires_grad=old.requires_grad)
        self.todo.append((m, "_parameters", name, p))

    def buffer(self, m: nn.Module, name: str, value: torch.Tensor) -> None:
        self.todo.append((m, "_buffers", name, value.detach()))

    def attr(self, m: nn.Module, name: str, value: Any) -> None:
        self.todo.append((m, "", name, value))

    def child(self, parent: nn.Module, name: str, value: nn.Module) -> None:
        self.todo.append((parent, "_modules", name, value))

    def write(self) -> None:
        for m, slot, name, value in self.todo:
            if slot:
                store = getattr(m, slot)
                self.undo.append((m, slot, name, store[name]))
                store[name] = value
            else:
                self.undo.append((m, "", name, getattr(m, name)))
                setattr(m, name, value)

    def restore(self) -> None:
        for m, slot, name, value in reversed(self.undo):
            if slot:
                getattr(m, slot)[name] = value
            else:
                setattr(m, name, value)
        self.undo.clear()


def verified(
    model: nn.Module,
    example_input: Any,
    writer: Writer,
    check: bool,
    what: str,
    on_error: Callable[[float], str] | None = None,
) -> float | None:
    """Write; with an input, measure the change of the model's outputs and undo the write
    (raising :class:`GrowthError`) when ``check`` is on and it exceeds ``1e-4`` relative."""
    before = run_outputs(model, example_input) if example_input is not None else None
    writer.write()
    if before is None:
        return None
    try:
        change = relative_change(before, run_outputs(model, example_input))
    except BaseException:
        writer.restore()
        raise
    if check and not change <= 1e-4:
        writer.restore()
        raise GrowthError(
            on_error(change)
            if on_error
            else f"{what} changed the model's outputs by {change:.2e} relative (expected 0)"
        )
    return change


def plan_std(model: nn.Module, param: str, example_input: Any) -> float | None:
    """The std the model's ``auto`` plan gives parameter ``param`` (None when untouched)."""
    from initscope.policy import plan

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # untouched parameters: not our concern
        p = plan(model, example_input=example_input)
    try:
        return p[param].std
    except (KeyError, ValueError):
        return None


def _rows(w: torch.Tensor, dim: int, index: torch.Tensor) -> torch.Tensor:
    return w.index_select(dim, index)


def widen(
    model: nn.Module,
    layer_path: str,
    new_width: int,
    *,
    noise: float = 0.0,
    example_input: Any = None,
    check: bool = True,
    generator: torch.Generator | None = None,
) -> Growth:
    """Widen the layer at ``layer_path`` to ``new_width`` output units, in place, keeping the
    model's function (Net2WiderNet, Chen, Goodfellow & Shlens 2016).

    New unit ``j`` copies old unit ``g(j) = j mod n`` (``n`` the old width): its incoming
    weights and bias are copies, and every layer that reads the units divides the input
    weights of a unit by ``c_i = |{j : g(j) = i}|``, the number of its copies, so that

        sum_j W'[:, j] h'_j = sum_i c_i (W[:, i] / c_i) h_i = W h.

    The units are followed through the model's graph (:func:`initscope.inspect_model`'s
    ``torch.fx`` trace, or a recorded forward on ``example_input``): through activations,
    dropout, pooling, ``flatten`` of conv channels into a Linear, per-unit norms (BatchNorm
    parameters and running statistics are copied), residual ``add`` s (every layer writing to
    or reading from the stream widens too) and gating products. A LayerNorm or RMSNorm over
    the units keeps its output only when every unit has the same number of copies
    (bert2BERT): ``new_width`` must then be a multiple of ``n``.

    Args:
        model: the model; changed in place (parameters are replaced by wider ones: build the
            optimizer after growing).
        layer_path: a ``nn.Linear``, ``nn.Conv*d`` (groups 1) or ``nn.Embedding`` module path.
        new_width: the new number of units, ``> n``.
        noise: add ``noise * std * N(0, 1)`` to the new units' incoming weights, ``std`` the
            model's ``auto`` plan std for that layer, to break the symmetry between copies
            (the function then changes by about that much).
        example_input: a batch the model accepts: needed when ``torch.fx`` cannot trace the
            model; with it the change of the outputs is measured (``Growth.max_change``).
        check: with ``example_input`` and ``noise == 0``, undo and raise when the outputs
            changed by more than ``1e-4`` relative.
        generator: for the noise.

    Returns:
        A :class:`Growth` listing every tensor that changed.

    Raises:
        TypeError, ValueError: bad arguments; ``GrowthError`` (a ``ValueError``) when the units
        are tied to the model's input or output, reach an op that cannot be followed, a
        tied weight, or a normalization that cannot keep the function. Nothing has changed
        then: the model is bit-identical.
    """
    target = submodule(model, layer_path, "layer_path")
    n = out_width(target)
    if n is None:
        raise TypeError(
            f"layer_path: {layer_path!r} is a {type(target).__name__}; expected nn.Linear, "
            "nn.Conv1d/2d/3d or nn.Embedding"
        )
    new_width = check_int("new_width", new_width)
    if new_width <= n:
        raise ValueError(f"new_width: expected more than the current {n} units, got {new_width}")
    noise = check_real("noise", noise, low=0)
    check_generator(generator)
    units = trace_units(model, graph_nodes(model, example_input), layer_path)
    if units.feature_norms and new_width % n:
        raise GrowthError(
            f"cannot widen {layer_path!r} to {new_width}: {', '.join(units.feature_norms)} "
            f"normalizes over the units, which keeps the function only when every unit is "
            f"copied equally often: new_width must be a multiple of {n}"
        )
    check_untied(model, list(units.modules), "widen")

    g = torch.tensor([j % n for j in range(new_width)])
    counts = torch.bincount(g, minlength=n).to(torch.float64)
    std = plan_std(model, f"{layer_path}.weight", example_input) if noise > 0 else None
    writer = Writer()
    changed: list[tuple[str, str]] = []
    for path, m in units.modules.items():
        producer = path in units.producers
        block = units.consumers.get(path)
        for name, t in list(m.named_parameters(recurse=False)) + list(
            m.named_buffers(recurse=False)
        ):
            if t is None or t.dim() == 0:
                continue
            new = t.detach()
            notes = []
            if isinstance(m, nn.Embedding):
                new = _rows(new, 1, g)
                notes.append("columns copied")
            elif is_transposed_linear(m):  # weight (in, out), bias (out)
                if producer:
                    new = _rows(new, new.dim() - 1, g)
                    notes.append("output units copied")
                if block is not None and name == "weight":
                    new = _rows(new, 0, g) / counts[g].to(new.dtype)[:, None]
                    notes.append("input rows copied and split 1/c")
            elif path in units.channel_norms or path in units.feature_norms:
                new = _rows(new, 0, g)
                notes.append("copied per unit")
            else:
                if producer:
                    new = _rows(new, 0, g)
                    notes.append("output rows copied")
                if block is not None and name == "weight":
                    cols = (g[:, None] * block + torch.arange(block)).reshape(-1)
                    scale = (1.0 / counts[g]).repeat_interleave(block).to(new.dtype)
                    shape = [1] * new.dim()
                    shape[1] = -1
                    new = _rows(new, 1, cols) * scale.view(shape)
                    notes.append("input columns copied and split 1/c")
            if not notes:
                continue
            if producer and name == "weight" and path == layer_path and noise > 0:
                s = std if std is not None else float(t.detach().float().std())
                rows = new[:, n:].T if is_transposed_linear(m) else new[n:]
                eps = torch.randn(rows.shape, generator=generator, dtype=new.dtype)
                new = new.clone()
                if is_transposed_linear(m):
                    new[:, n:] += noise * s * eps.T.to(new.device)
                else:
                    new[n:] += noise * s * eps.to(new.device)
                notes.append(f"noise {noise:g} x std {s:.3g} on the new rows")
            if name in m._parameters:
                writer.param(m, name, new)
            else:
                writer.buffer(m, name, new)
            changed.append((f"{path}.{name}", ", ".join(notes)))
        _resize_attrs(writer, m, path, units, new_width)
    change = verified(model, example_input, writer, check and noise == 0, f"widen {layer_path!r}")
    return Growth(
        "widen",
        layer_path,
        n,
        new_width,
        changed=tuple(changed),
        mapping=tuple(int(i) for i in g[n:]),
        max_change=change,
    )


def _resize_attrs(writer: Writer, m: nn.Module, path: str, units: Units, width: int) -> None:
    block = units.consumers.get(path)
    if is_transposed_linear(m):
        if path in units.producers:
            writer.attr(m, "nf", width)
        if block is not None and hasattr(m, "nx"):
            writer.attr(m, "nx", width)
    elif isinstance(m, nn.Linear):
        if path in units.producers:
            writer.attr(m, "out_features", width)
        if block is not None:
            writer.attr(m, "in_features", width * block)
    elif isinstance(m, nn.Embedding):
        writer.attr(m, "embedding_dim", width)
    elif path in units.channel_norms:
        writer.attr(m, "num_features", width)
    elif path in units.feature_norms:
        writer.attr(m, "normalized_shape", (width,))
    else:  # convolution
        if path in units.producers:
            writer.attr(m, "out_channels", width)
        if block is not None:
            writer.attr(m, "in_channels", width)
