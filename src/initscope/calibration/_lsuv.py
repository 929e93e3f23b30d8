"""Layer-sequential unit-variance (LSUV) initialization in one progressive pass.

Mishkin & Matas (2016), "All you need is a good init", ICLR: pre-initialize every layer with an
orthonormal matrix (Saxe et al. 2014), then, layer by layer, divide the weights by the standard
deviation of the layer's output on a batch until ``|std - target_std| <= tol`` (at most
``max_iters`` times).

Here the layers are processed during a single forward pass, in execution order: a forward hook
takes each layer's input as it runs for the first time, rescales the weight and re-runs only
that layer on the cached input, and returns the corrected output so that everything downstream
sees it. The cost is one forward pass plus the per-layer re-runs, linear in depth (the ``lsuv``
package re-runs the whole network for every layer and every iteration: quadratic in depth).
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from initscope.calibration import _lsuv_helpers as H

__all__ = ["LSUVLayer", "LSUVResult", "lsuv"]

logger = logging.getLogger(__name__)

Status = Literal["converged", "not_converged", "dead", "zero_init", "never_ran", "unsupported"]
_DEAD_RTOL = 1e-12  # an output std below _DEAD_RTOL * target_std counts as dead


@dataclass(frozen=True)
class LSUVLayer:
    """What LSUV did to one layer.

    ``std_before`` / ``std_after``: standard deviation of the layer's whole output on the batch
    (the pooled batches, all ranks) before and after; ``mean_after`` its mean. ``scale``: the
    factor the weight was multiplied by (``per_channel``: the geometric mean over channels).
    ``status``: ``"converged"`` (``|std - target_std| <= tol``, per channel with ``per_channel``),
    ``"not_converged"`` (``max_iters`` reached), ``"dead"`` (output std 0: cannot be scaled),
    ``"zero_init"`` (all-zero weight left at zero), ``"never_ran"`` (selected but not called on the
    batch) or ``"unsupported"`` (a parametrized weight). ``calls``: times the layer ran (a shared
    layer is scaled on its first call).
    """

    path: str
    type: str
    status: Status
    std_before: float | None
    std_after: float | None
    mean_after: float | None
    scale: float
    iterations: int
    calls: int
    orthogonalized: bool
    notes: tuple[str, ...] = ()

    @property
    def converged(self) -> bool:
        return self.status == "converged"


@dataclass(frozen=True)
class LSUVResult:
    """Per-layer outcome of :func:`lsuv`, in execution order (layers that never ran last).

    Prints as a table; ``result["block.fc1"]`` gives one layer's record.
    """

    layers: list[LSUVLayer]
    target_std: float
    tol: float
    per_channel: bool
    center: bool
    orthogonal: bool
    num_batches: int
    world_size: int = 1

    @property
    def converged(self) -> bool:
        """Every layer reached the target, apart from all-zero layers left at zero."""
        return all(layer.status in ("converged", "zero_init") for layer in self.layers)

    def __getitem__(self, path: str) -> LSUVLayer:
        for layer in self.layers:
            if layer.path == path:
                return layer
        raise KeyError(f"no layer {path!r}; layers: {[layer.path for layer in self.layers]}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for layer in d["layers"]:
            layer["notes"] = list(layer["notes"])
        d["converged"] = self.converged
        return d

    def __rich__(self) -> Any:
        from rich.table import Table

        table = Table(
            title=f"LSUV: target std {self.target_std:g} +/- {self.tol:g}",
            caption=f"{sum(x.converged for x in self.layers)}/{len(self.layers)} converged",
        )
        for col in ("#", "layer", "type", "std before", "std after", "scale", "iters", "status"):
            table.add_column(col, justify="right" if col in ("#", "iters") else "left")
        table.add_column("notes", overflow="fold")
        for i, x in enumerate(self.layers):
            table.add_row(
                str(i),
                x.path,
                x.type,
                _fmt(x.std_before),
                _fmt(x.std_after),
                f"{x.scale:.4g}",
                str(x.iterations),
                x.status,
                "; ".join(x.notes),
            )
        return table

    def __str__(self) -> str:
        from rich.console import Console

        buf = io.StringIO()
        Console(file=buf, width=140, color_system=None).print(self.__rich__())
        return buf.getvalue()


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


@dataclass
class _Record:
    path: str
    module: nn.Module
    reason: str
    started: bool = False
    zero: bool = False
    orthogonalized: bool = False
    calls: int = 0
    status: Status = "never_ran"
    std_before: float | None = None
    std_after: float | None = None
    mean_after: float | None = None
    scale: float = 1.0
    iterations: int = 0
    notes: list[str] = field(default_factory=list)

    def freeze(self) -> LSUVLayer:
        notes = list(self.notes)
        if self.calls > 1:
            notes.append(f"shared: called {self.calls} times, scaled on the first call")
        if self.status == "never_ran":
            notes.append("never ran on the batch: left as is")
        return LSUVLayer(
            self.path or type(self.module).__name__,
            type(self.module).__name__,
            self.status,
            self.std_before,
            self.std_after,
            self.mean_after,
            self.scale,
            self.iterations,
            self.calls,
            self.orthogonalized,
            tuple(notes),
        )


class _Pass:
    """The hooks of the progressive pass and the state they share."""

    def __init__(self, records: dict[nn.Module, _Record], opts: dict[str, Any], bar: Any):
        self.records = records
        self.opts = opts
        self.bar = bar
        self.rerunning = False  # re-runs of a layer (and of layers nested in it) pass through
        self.reduce = H.distributed()
        self.order: list[_Record] = []

    def pre_hook(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        rec = self.records[module]
        if self.rerunning or rec.started:
            return
        rec.started = True
        self.order.append(rec)
        if rec.reason:
            return
        if self.opts["skip_zero_init"] and not bool(H.scaled_weight(module).any()):
            rec.zero = True
            return
        if self.opts["orthogonal"]:
            written = H.orthogonalize(module, self.opts["generator"])
            H.broadcast(written)
            rec.orthogonalized = bool(written)

    def hook(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        rec = self.records[module]
        if self.rerunning:
            return None
        rec.calls += 1
        if rec.calls > 1:
            return None
        try:
            return self._normalize(module, rec, args, kwargs, output)
        finally:
            self.bar.update(1)

    def _stats(self, module: nn.Module, output: Any, rec: _Record) -> H.Stats:
        y = H.primary_output(output, rec.path)
        ch = H.channel_dim(module, y) if self.opts["per_channel"] else None
        return H.batch_stats(y, ch, rec.path, self.reduce)

    def _verdict(self, st: H.Stats, center: bool) -> tuple[bool, bool]:
        """(dead, done) for the current statistics."""
        target, tol = self.opts["target_std"], self.opts["tol"]
        eps = _DEAD_RTOL * target
        if st.channel_std is not None:
            live = st.channel_std > eps
            if not bool(live.any()):
                return True, False
            std_ok = bool(((st.channel_std - target).abs()[live] <= tol).all())
            mean_ok = bool((st.channel_mean.abs() <= tol).all())
        else:
            if st.std <= eps:
                return True, False
            std_ok = abs(st.std - target) <= tol
            mean_ok = abs(st.mean) <= tol
        return False, std_ok and (mean_ok or not center)

    def _normalize(self, module: nn.Module, rec: _Record, args: tuple, kwargs: dict, output: Any):
        o = self.opts
        target = o["target_std"]
        st = self._stats(module, output, rec)
        rec.std_before = st.std
        if rec.reason or rec.zero:
            rec.status = "unsupported" if rec.reason else "zero_init"
            rec.notes.append(rec.reason or "all-zero weight (zero-initialized): left at zero")
            rec.std_after, rec.mean_after = st.std, st.mean
            return None
        weight, bias = H.scaled_weight(module), H.scaled_bias(module)
        center = o["center"] and bias is not None
        if o["center"] and bias is None:
            rec.notes.append("no bias: not centered")
        first, log_scale, inert = output, torch.zeros(()), False
        while True:
            dead, done = self._verdict(st, center)
            if dead or done or rec.iterations == o["max_iters"]:
                break
            if not rec.iterations:
                saved = [(t, t.detach().clone()) for t in (weight, bias) if t is not None]
            if st.channel_std is not None:
                eps = _DEAD_RTOL * target
                s = torch.where(st.channel_std > eps, target / st.channel_std.clamp_min(eps), 1.0)
                H.scale_channels(module, weight, s, rec.path)
                m = st.channel_mean
                if center:  # y' = s (y - m): W' = s W, b' = s (b - m)
                    bias.sub_(m.to(bias)).mul_(s.to(bias))
            else:
                s = torch.tensor(target / st.std, dtype=torch.float64)
                weight.mul_(float(s))
                if center:
                    bias.sub_(st.mean).mul_(float(s))
            log_scale = log_scale + s.log()
            rec.iterations += 1
            self.rerunning = True
            try:
                output = module.forward(*args, **kwargs)
            finally:
                self.rerunning = False
            prev, st = st, self._stats(module, output, rec)
            # the weight does not reach the output (a constant input: only the bias varies)
            inert = st.channel_std is None and not center and st.std == prev.std
            if inert:
                for t, v in saved:
                    t.copy_(v)
                output, st, log_scale, rec.iterations, dead = first, prev, log_scale * 0, 0, True
                break
        rec.std_after, rec.mean_after = st.std, st.mean
        rec.scale = math.exp(float(log_scale.mean()))
        if inert:
            rec.status = "dead"
            rec.notes.append("dead: the output does not change with the weight (constant input)")
        elif dead:
            rec.status = "dead"
            rec.notes.append("dead: output std is 0 on the batch, cannot be scaled")
        elif done:
            rec.status = "converged"
        else:
            rec.status = "not_converged"
            rec.notes.append(f"not within tol after max_iters={o['max_iters']}")
        if st.channel_std is not None and not dead:
            n_dead = int((st.channel_std <= _DEAD_RTOL * target).sum())
            if n_dead:
                rec.notes.append(f"{n_dead} dead channel(s) left unscaled")
        logger.debug(
            "lsuv %s: std %.4g -> %.4g (%s)", rec.path, rec.std_before, rec.std_after, rec.status
        )
        return output if rec.iterations else None


@contextlib.contextmanager
def _hooked(p: _Pass) -> Iterator[None]:
    handles = []
    try:
        for module in p.records:
            handles.append(
                module.register_forward_pre_hook(p.pre_hook, with_kwargs=True, prepend=True)
            )
            handles.append(module.register_forward_hook(p.hook, with_kwargs=True, prepend=True))
        yield
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def _eval_mode_no_fastpath(model: nn.Module) -> Iterator[None]:
    """Eval mode for every submodule, restored per module; attention fast paths off (they skip
    submodule calls, so hooks would not fire)."""
    modes = [(m, m.training) for m in model.modules()]
    mha = hasattr(torch.backends, "mha")
    fastpath = torch.backends.mha.get_fastpath_enabled() if mha else None
    try:
        model.eval()
        if mha:
            torch.backends.mha.set_fastpath_enabled(False)
        yield
    finally:
        if mha:
            torch.backends.mha.set_fastpath_enabled(fastpath)
        for m, training in modes:
            m.training = training


def _check_args(
    model: Any,
    target_std: Any,
    tol: Any,
    max_iters: Any,
    flags: dict[str, Any],
    get_input: Any,
    num_batches: Any,
    generator: Any,
) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
    for name, v in (("target_std", target_std), ("tol", tol)):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError(f"{name}: expected a float, got {type(v).__name__}")
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"{name}: expected a finite value > 0, got {v}")
    for name, v in (("max_iters", max_iters), ("num_batches", num_batches)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{name}: expected an int, got {type(v).__name__}")
        if v < 1:
            raise ValueError(f"{name}: expected an int >= 1, got {v}")
    for name, v in flags.items():
        if not isinstance(v, bool):
            raise TypeError(f"{name}: expected a bool, got {type(v).__name__}")
    if get_input is not None and not callable(get_input):
        raise TypeError(f"get_input: expected a callable or None, got {type(get_input).__name__}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator: expected a torch.Generator, got {type(generator).__name__}")


def _prepare(model: nn.Module, data: Any, get_input: Callable | None, num_batches: int):
    inputs = [H.split_batch(b, get_input) for b in H.take_batches(data, num_batches)]
    args, kwargs = inputs[0] if len(inputs) == 1 else H.concat(inputs)
    H.check_input((args, kwargs))
    devices = {p.device for p in model.parameters()}
    if len(devices) == 1:
        (device,) = devices
        args, kwargs = H.map_tensors((args, kwargs), lambda t: t.to(device))
    return args, kwargs


def lsuv(
    model: nn.Module,
    data: Any,
    *,
    target_std: float = 1.0,
    tol: float = 0.1,
    max_iters: int = 10,
    orthogonal: bool = True,
    per_channel: bool = False,
    center: bool = False,
    skip_zero_init: bool = True,
    layers: H.LayerSpec | None = None,
    get_input: Callable[[Any], Any] | None = None,
    num_batches: int = 1,
    progress: bool = False,
    generator: torch.Generator | None = None,
) -> LSUVResult:
    """Layer-sequential unit-variance initialization (Mishkin & Matas 2016), in place.

    For each selected layer, in execution order, on its first call: optionally replace its
    weight by an orthonormal one (``orthogonal``; Saxe et al. 2014), then repeat
    ``W <- W * target_std / std(y)`` and re-run that layer alone on its input until
    ``|std(y) - target_std| <= tol`` or ``max_iters`` rescalings; the corrected output goes on
    downstream. One forward pass plus the per-layer re-runs: linear in depth.

    Args:
        model: the network; modified in place, left on its device and in its train/eval mode
            (the pass itself runs in eval mode: no dropout, BatchNorm running statistics
            untouched; attention fast paths are disabled so submodule hooks fire).
        data: a tensor (the input), a tuple/list batch (its first element is the input), a dict
            batch (passed as ``model(**batch)``), or a DataLoader / iterable of such batches.
            Tensors are moved to the model's device when its parameters share one.
        target_std, tol: the target output std and the absolute tolerance on it.
        max_iters: at most this many rescalings per layer.
        orthogonal: orthonormal pre-init (per E x E slice of attention in-projections, per group
            of grouped convs; conv weights as (out, in * k * k) matrices). Biases are kept.
        per_channel: normalize each output channel's std separately (the weight scaled per row).
        center: also zero the output mean through the bias (``b <- s (b - mean)``, per channel
            with ``per_channel``), as in the LSUV reference code's mean correction; the mean is
            then also held to ``|mean| <= tol``.
        skip_zero_init: leave all-zero weights (e.g. residual branch ends zeroed by
            ``initialize(..., zero_init_residual=True)``) at zero, neither orthogonalized nor
            scaled.
        layers: which modules to normalize: None for Linear, Conv*, ConvTranspose* and
            MultiheadAttention (scaled through ``out_proj``); or an nn.Module subclass, a glob on
            module paths (``"blocks.*.fc2"``, fnmatch), a predicate ``(path, module) -> bool``,
            or a list of these (a module matching any is selected). Modules without a weight
            are never selected.
        get_input: ``batch -> model input``; a tuple result is passed as ``model(*x)``, a dict
            as ``model(**x)``, anything else as ``model(x)``.
        num_batches: batches taken from a DataLoader; their inputs are concatenated along
            dim 0 and pushed through the one pass, so the statistics are sums of y and y^2 over
            all of them.
        progress: show a tqdm progress bar over the layers.
        generator: the random generator of the orthonormal pre-init.

    With ``torch.distributed`` initialized, the sums (count, sum of y, sum of y^2) are
    all-reduced so every rank applies the same scale, and each orthonormal pre-init is
    broadcast from rank 0; every rank must run the same layers in the same order.

    Raises:
        ValueError: NaN/inf in the data, an empty batch, no eligible layer, a layer emitting
            NaN/inf. Any error leaves the model unchanged (parameters, buffers and modes are
            restored).
        TypeError: arguments of the wrong type.
    """
    flags = {
        "orthogonal": orthogonal,
        "per_channel": per_channel,
        "center": center,
        "skip_zero_init": skip_zero_init,
        "progress": progress,
    }
    _check_args(model, target_std, tol, max_iters, flags, get_input, num_batches, generator)
    error: ValueError | TypeError | None = None
    try:
        args, kwargs = _prepare(model, data, get_input, num_batches)
        selected = H.select_layers(model, layers)
        if not selected:
            raise ValueError(
                "model: no eligible layer (Linear, Conv*, ConvTranspose*, MultiheadAttention, or "
                "what layers= selects among modules with a weight)"
            )
    except (ValueError, TypeError) as exc:
        error = exc
    if H.any_rank(error is not None):
        raise error or ValueError("lsuv: the data or model failed validation on another rank")

    records = {m: _Record(path, m, reason) for path, m, reason in selected}
    snapshot = [(t, t.detach().clone()) for t in (*model.parameters(), *model.buffers())]
    opts = {
        "target_std": float(target_std),
        "tol": float(tol),
        "max_iters": max_iters,
        "generator": generator,
        **flags,
    }
    bar = _progress_bar(len(records), progress)
    p = _Pass(records, opts, bar)
    try:
        with torch.no_grad(), _eval_mode_no_fastpath(model), _hooked(p):
            model(*args, **kwargs)
    except BaseException:
        with torch.no_grad():
            for t, saved in snapshot:
                t.copy_(saved)
        raise
    finally:
        bar.close()
    ordered = p.order + [r for r in records.values() if not r.started]
    result = LSUVResult(
        [r.freeze() for r in ordered],
        float(target_std),
        float(tol),
        per_channel,
        center,
        orthogonal,
        num_batches,
        _world_size(),
    )
    for layer in result.layers:
        if layer.status not in ("converged", "zero_init"):
            logger.warning(
                "lsuv: layer %r %s (%s)", layer.path, layer.status, "; ".join(layer.notes)
            )
    return result


def _world_size() -> int:
    return torch.distributed.get_world_size() if H.distributed() else 1


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(total: int, show: bool) -> Any:
    if not show:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="LSUV", unit="layer")
