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
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from initscope._torch import Batch, check_int, removing, state_guard
from initscope.calibration import _lsuv_helpers as H
from initscope.calibration._lsuv_result import LSUVLayer, LSUVResult, _Record

__all__ = ["LSUVLayer", "LSUVResult", "lsuv"]

logger = logging.getLogger(__name__)

_DEAD_RTOL = 1e-12  # an output std below _DEAD_RTOL * target_std counts as dead


@dataclass(frozen=True)
class _Options:
    """The pass's settings, checked by :func:`lsuv`."""

    target_std: float
    tol: float
    max_iters: int
    orthogonal: bool
    per_channel: bool
    center: bool
    skip_zero_init: bool
    generator: torch.Generator | None

    @property
    def dead_below(self) -> float:
        """An output std at or below this counts as dead."""
        return _DEAD_RTOL * self.target_std


Outcome = Literal["converged", "dead", "inert"]


class _Pass:
    """The hooks of the progressive pass and the state they share."""

    def __init__(
        self,
        records: dict[nn.Module, _Record],
        opts: _Options,
        holders: dict[int, list[tuple[str, nn.Module]]],
        bar: Any,
    ) -> None:
        self.records = records
        self.opts = opts
        self.holders = holders  # tensor id -> the modules holding it, for tied tensors
        self.bar = bar
        self.rerunning = False  # re-runs of a layer (and of layers nested in it) pass through
        self.reduce = H.distributed()
        self.order: list[_Record] = []
        self.ran: set[int] = set()  # ids of modules holding a tied tensor that have run

    def mark(self, module: nn.Module, args: tuple) -> None:
        if not self.rerunning:
            self.ran.add(id(module))

    def pre_hook(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        rec = self.records[module]
        if self.rerunning or rec.started:
            return
        rec.started = True
        self.order.append(rec)
        if not rec.reason:
            rec.reason = self._tie(module, rec)
        self.ran.add(id(module))
        if rec.reason:
            return
        if self.opts.skip_zero_init and not bool(self._weight(module).any()):
            rec.zero = True
            return
        if self.opts.orthogonal:
            written = H.orthogonalize(module, self.opts.generator)
            H.broadcast(written)
            rec.orthogonalized = bool(written)

    def _tie(self, module: nn.Module, rec: _Record) -> str:
        """Why a tied layer is left as is (a holder of its tensors ran before it), else ''."""
        inner = {id(m) for m in module.modules()}
        earlier: list[str] = []
        later: list[str] = []
        for t in H.written(module):
            for path, holder in self.holders.get(id(t), []):
                if id(holder) in inner:
                    continue
                (earlier if id(holder) in self.ran else later).append(path or "(model)")
        if earlier:
            rec.status = "tied"
            return (
                f"tied: shares its weight with {', '.join(sorted(set(earlier)))}, which ran "
                "before it; scaling it would change outputs already measured: left as is"
            )
        if later:
            rec.notes.append(
                f"tied: shares its weight with {', '.join(sorted(set(later)))}, which run(s) "
                "after it and see the scaled weight"
            )
        return ""

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
        ch = H.channel_dim(module, y) if self.opts.per_channel else None
        return H.batch_stats(y, ch, rec.path, self.reduce)

    def _outcome(self, st: H.Stats, center: bool) -> Outcome | None:
        """``"dead"`` (nothing to scale), ``"converged"`` (within tol), or None (rescale)."""
        target, tol, eps = self.opts.target_std, self.opts.tol, self.opts.dead_below
        channel_std, channel_mean = st.channel_std, st.channel_mean
        if channel_std is not None and channel_mean is not None:
            live = channel_std > eps
            if not bool(live.any()):
                return "dead"
            std_ok = bool(((channel_std - target).abs()[live] <= tol).all())
            mean_ok = bool((channel_mean.abs() <= tol).all())
        else:
            if st.std <= eps:
                return "dead"
            std_ok = abs(st.std - target) <= tol
            mean_ok = abs(st.mean) <= tol
        return "converged" if std_ok and (mean_ok or not center) else None

    def _rescale(self, module: nn.Module, rec: _Record, st: H.Stats, center: bool) -> torch.Tensor:
        """One step ``W <- s W`` (``b <- s (b - mean)`` with ``center``), ``s = target / std``,
        per channel with ``per_channel`` (dead channels keep ``s = 1``); returns ``log s``."""
        weight = self._weight(module)
        bias = H.scaled_bias(module) if center else None  # center: the layer has a bias
        target, eps = self.opts.target_std, self.opts.dead_below
        channel_std, channel_mean = st.channel_std, st.channel_mean
        if channel_std is not None and channel_mean is not None:
            s = torch.where(channel_std > eps, target / channel_std.clamp_min(eps), 1.0)
            H.scale_channels(module, weight, s, rec.path)
            if bias is not None:  # y' = s (y - m): W' = s W, b' = s (b - m)
                bias.sub_(channel_mean.to(bias)).mul_(s.to(bias))
            return s.log()
        factor = target / st.std
        weight.mul_(factor)
        if bias is not None:
            bias.sub_(st.mean).mul_(factor)
        return torch.tensor(math.log(factor), dtype=torch.float64)

    @staticmethod
    def _weight(module: nn.Module) -> torch.Tensor:
        weight = H.scaled_weight(module)
        if weight is None:  # unreachable: select_layers keeps only layers with a weight
            raise RuntimeError(f"lsuv: {type(module).__name__} has no weight to scale")
        return weight

    def _rerun(self, module: nn.Module, args: tuple, kwargs: dict) -> Any:
        self.rerunning = True
        try:
            return module.forward(*args, **kwargs)
        finally:
            self.rerunning = False

    def _normalize(
        self, module: nn.Module, rec: _Record, args: tuple, kwargs: dict, output: Any
    ) -> Any:
        """Rescale the layer until its output is on target; the corrected output (None when the
        layer was left as it ran) goes on downstream."""
        st = self._stats(module, output, rec)
        rec.std_before, rec.std_after, rec.mean_after = st.std, st.std, st.mean
        if rec.reason or rec.zero:
            if rec.status != "tied":
                rec.status = "unsupported" if rec.reason else "zero_init"
            rec.notes.append(rec.reason or "all-zero weight (zero-initialized): left at zero")
            return None
        center = self.opts.center and H.scaled_bias(module) is not None
        if self.opts.center and not center:
            rec.notes.append("no bias: not centered")
        outcome, output, st, log_scale = self._iterate(
            module, rec, (args, kwargs), output, st, center
        )
        rec.std_after, rec.mean_after = st.std, st.mean
        rec.scale = math.exp(float(log_scale.mean()))
        self._settle(rec, outcome, st)
        logger.debug(
            "lsuv %s: std %.4g -> %.4g (%s)", rec.path, rec.std_before, rec.std_after, rec.status
        )
        return output if rec.iterations else None

    def _iterate(
        self,
        module: nn.Module,
        rec: _Record,
        inputs: tuple[tuple, dict],
        output: Any,
        st: H.Stats,
        center: bool,
    ) -> tuple[Outcome | None, Any, H.Stats, torch.Tensor]:
        """At most ``max_iters`` rescalings, each followed by a re-run of the layer alone.

        Returns the outcome (None: still off target), the last output, its statistics and the
        accumulated ``log s``. ``"inert"``: a rescaling did not change the output std (the weight
        does not reach the output: a constant input, only the bias varies); the weights are put
        back and the first output and statistics returned.
        """
        first, first_st = output, st
        log_scale = torch.zeros((), dtype=torch.float64)
        outcome = self._outcome(st, center)
        saved = [] if outcome is not None else [(t, t.detach().clone()) for t in H.written(module)]
        while outcome is None and rec.iterations < self.opts.max_iters:
            log_scale = log_scale + self._rescale(module, rec, st, center)
            rec.iterations += 1
            previous, output = st, self._rerun(module, *inputs)
            st = self._stats(module, output, rec)
            if st.channel_std is None and not center and st.std == previous.std:
                for t, v in saved:
                    t.copy_(v)
                rec.iterations = 0
                return "inert", first, first_st, torch.zeros((), dtype=torch.float64)
            outcome = self._outcome(st, center)
        return outcome, output, st, log_scale

    def _settle(self, rec: _Record, outcome: Outcome | None, st: H.Stats) -> None:
        """The layer's status and notes from the outcome of :meth:`_iterate`."""
        if outcome == "inert":
            rec.status = "dead"
            rec.notes.append("dead: the output does not change with the weight (constant input)")
            return
        if outcome == "dead":
            rec.status = "dead"
            rec.notes.append("dead: output std is 0 on the batch, cannot be scaled")
            return
        rec.status = outcome or "not_converged"
        if outcome is None:
            rec.notes.append(f"not within tol after max_iters={self.opts.max_iters}")
        if st.channel_std is not None:
            n_dead = int((st.channel_std <= self.opts.dead_below).sum())
            if n_dead:
                rec.notes.append(f"{n_dead} dead channel(s) left unscaled")


@contextlib.contextmanager
def _hooked(p: _Pass) -> Iterator[None]:
    with removing() as handles:
        tied = {id(m): m for holders in p.holders.values() for _, m in holders}
        for module in tied.values():
            handles.append(module.register_forward_pre_hook(p.mark))
        for module in p.records:
            handles.append(
                module.register_forward_pre_hook(p.pre_hook, with_kwargs=True, prepend=True)
            )
            handles.append(module.register_forward_hook(p.hook, with_kwargs=True, prepend=True))
        yield


@contextlib.contextmanager
def _eval_mode_no_fastpath(model: nn.Module) -> Iterator[None]:
    """Eval mode for every submodule (the state guard restores the modes); attention fast paths
    off (they skip submodule calls, so hooks would not fire)."""
    if not hasattr(torch.backends, "mha"):  # no fast-path switch in this torch
        model.eval()
        yield
        return
    fastpath = torch.backends.mha.get_fastpath_enabled()
    try:
        model.eval()
        torch.backends.mha.set_fastpath_enabled(False)
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


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
        check_int(name, v, low=1)
    for name, v in flags.items():
        if not isinstance(v, bool):
            raise TypeError(f"{name}: expected a bool, got {type(v).__name__}")
    if get_input is not None and not callable(get_input):
        raise TypeError(f"get_input: expected a callable or None, got {type(get_input).__name__}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator: expected a torch.Generator, got {type(generator).__name__}")


def _prepare(model: nn.Module, data: Any, get_input: Callable | None, num_batches: int) -> Batch:
    batch = H.pool([H.split_batch(b, get_input) for b in H.take_batches(data, num_batches)])
    H.check_input(batch)
    devices = {p.device for p in model.parameters()}
    if len(devices) == 1:
        (device,) = devices
        batch = batch.map(lambda t: t.to(device))
    return batch


def _tied(model: nn.Module) -> dict[int, list[tuple[str, nn.Module]]]:
    """Tensor id -> the modules holding it directly, for tensors two or more modules hold."""
    holders: dict[int, list[tuple[str, nn.Module]]] = {}
    for path, m in model.named_modules(remove_duplicate=False):
        for p in m._parameters.values():
            if p is not None and all(m is not other for _, other in holders.get(id(p), [])):
                holders.setdefault(id(p), []).append((path, m))
    return {k: v for k, v in holders.items() if len(v) > 1}


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
        data: a data batch as a DataLoader yields it: a tensor (the input), a tuple/list batch
            (its first element is the input: ``(inputs, targets)``), a dict batch (passed as
            ``model(**batch)``); a ``Batch`` (``initscope.calibration.Batch(args, kwargs)``: the
            model input stated explicitly, e.g. ``Batch((x, z))`` for ``model(x, z)``; this is
            what ``initialize(model, "lsuv", example_input=(x, z))`` passes); or a DataLoader /
            iterable of such batches. Tensors are moved to the model's device when its
            parameters share one.
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
        get_input: ``batch -> model input``; a tuple/list result is passed as ``model(*x)``, a
            dict as ``model(**x)``, anything else as ``model(x)``.
        num_batches: batches taken from a DataLoader; their inputs are concatenated along
            dim 0 and pushed through the one pass, so the statistics are sums of y and y^2 over
            all of them.
        progress: show a tqdm progress bar over the layers.
        generator: the random generator of the orthonormal pre-init.

    Tied weights: a selected layer whose weight is also held by a module that ran before it (an
    output layer tied to the input embedding) is left as is with status ``"tied"``; one that runs
    first among its holders is scaled, and the later holders see the scaled weight. Every
    reported ``std_after`` is the layer's output with the final weights.

    With ``torch.distributed`` initialized, the sums (count, sum of y, sum of y^2) are
    all-reduced so every rank applies the same scale, and each orthonormal pre-init is
    broadcast from rank 0; every rank must run the same layers in the same order.

    Only the selected layers' weights and biases change: buffers (also those a forward updates
    in place), modes, ``requires_grad``, ``.grad`` and torch's global random state are left as
    they were (:func:`initscope._torch.state_guard`).

    Raises:
        ValueError: NaN/inf in the data, an empty batch, no eligible layer, a layer emitting
            NaN/inf. Any error leaves the model unchanged (the written tensors are restored too).
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
    writes: list[torch.Tensor] = []
    try:
        with state_guard(model):  # reading a parametrized weight runs its parametrization
            batch = _prepare(model, data, get_input, num_batches)
            selected = H.select_layers(model, layers)
            writes = [t for _, m, reason in selected if not reason for t in H.written(m)]
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
    opts = _Options(
        float(target_std), float(tol), max_iters, orthogonal, per_channel, center,
        skip_zero_init, generator,
    )  # fmt: skip
    bar = _progress_bar(len(records), progress)
    p = _Pass(records, opts, _tied(model), bar)
    try:
        with state_guard(model, writes=writes), torch.no_grad():
            with _eval_mode_no_fastpath(model), _hooked(p):
                batch.call(model)
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
