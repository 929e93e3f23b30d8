"""Function-preserving deepening: a new layer or block that starts as the identity
(Net2DeeperNet: Chen, Goodfellow & Shlens 2016; stacking with zeroed residual branch ends, as
in bert2BERT's depth growth: Chen et al. 2022)."""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any, Literal

import torch
from torch import nn
from torch.nn.modules.conv import _ConvNd, _ConvTransposeNd

from initscope._torch import check_real
from initscope.activations import Activation
from initscope.graph import inspect_model
from initscope.grow._result import Growth
from initscope.grow._trace import GrowthError
from initscope.grow._widen import (
    Writer,
    check_generator,
    check_untied,
    plan_std,
    submodule,
    verified,
)

__all__ = ["deepen", "Residual"]

Block = Literal["auto", "identity", "residual", "copy"]
_BLOCKS = ("auto", "identity", "residual", "copy")
#: activations with f(f(x)) = f(x): a layer holding the identity after them keeps the function.
_IDEMPOTENT = frozenset({"relu", "relu6", "hardtanh", "linear"})
_ACT_MODULES = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "selu": nn.SELU,
    "mish": nn.Mish,
    "softplus": nn.Softplus,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
}


class Residual(nn.Module):
    """``x + body(x)``: a residual block; starts as the identity when ``body`` ends in zeros."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _act_module(model: nn.Module, act: Activation | None, at: str | None) -> nn.Module:
    """A module computing ``act``: a copy of the model's own when it is a module, else built
    from the name (ReLU when the layer has no known activation)."""
    modules = dict(model.named_modules())
    if at is not None and at in modules:
        return copy.deepcopy(modules[at])
    if act is None:
        return nn.ReLU()
    if act.name == "hardtanh":
        lo, hi = act.bounds
        return nn.Hardtanh(lo if lo is not None else -1.0, hi if hi is not None else 1.0)
    if act.name == "linear":
        return nn.Identity()
    cls = _ACT_MODULES.get(act.name)
    if cls is None:
        raise GrowthError(f"deepen: no module for the activation {act.label()!r}")
    return cls(act.param) if act.param is not None else cls()


def _square(m: nn.Linear | _ConvNd, n: int) -> nn.Linear | _ConvNd:
    """A new ``n -> n`` layer of the same family as ``m`` (kernel 3, same padding, for conv),
    built without drawing (its values are set by the caller)."""
    w = m.weight
    if isinstance(m, nn.Linear):
        return nn.utils.skip_init(nn.Linear, n, n, device=w.device, dtype=w.dtype)
    conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[w.dim() - 3]
    return nn.utils.skip_init(conv, n, n, 3, padding=1, device=w.device, dtype=w.dtype)


def _identity_(layer: nn.Linear | _ConvNd) -> None:
    with torch.no_grad():
        if isinstance(layer, nn.Linear):
            nn.init.eye_(layer.weight)
        else:
            nn.init.dirac_(layer.weight)
        if layer.bias is not None:
            layer.bias.zero_()


def _layer_facts(model: nn.Module, path: str, example_input: Any) -> Any:
    try:
        layers = inspect_model(model, example_input)
    except ValueError as exc:
        raise GrowthError(f"deepen: {exc}") from exc
    for layer in layers:
        if layer.path == path:
            return layer
    raise GrowthError(f"deepen: {path!r} holds no parameters the graph sees")


def _record_call(model: nn.Module, module: nn.Module, example_input: Any) -> tuple[tuple, dict]:
    from initscope.grow._widen import run_outputs

    seen: list[tuple[tuple, dict]] = []

    def pre(_: nn.Module, args: tuple, kwargs: dict) -> None:
        if not seen:
            seen.append((args, kwargs))

    handle = module.register_forward_pre_hook(pre, with_kwargs=True)
    try:
        run_outputs(model, example_input)
    finally:
        handle.remove()
    if not seen:
        raise GrowthError("deepen: the block never runs on example_input")
    return seen[0]


def _zero_branch_ends(block: nn.Module, call: tuple[tuple, dict] | None) -> list[str]:
    example: Any = None
    if call is not None:  # keyword arguments (masks) keep their defaults for the inspection
        args = call[0]
        example = args[0] if len(args) == 1 else tuple(args)
    try:
        layers = inspect_model(block, example)
    except ValueError as exc:
        raise GrowthError(f"deepen: cannot read the copied block ({exc})") from exc
    ends = [layer for layer in layers if layer.ends_residual and layer.calls > 0]
    if not ends:
        raise GrowthError("deepen: the block has no residual branch ends to zero")
    zeroed = []
    with torch.no_grad():
        for layer in ends:
            for name in ("weight", "bias"):
                t = getattr(layer.module, name, None)
                if isinstance(t, torch.Tensor):
                    t.zero_()
                    zeroed.append(f"{layer.path}.{name}" if layer.path else name)
    return zeroed


def deepen(
    model: nn.Module,
    after: str,
    *,
    block: Block = "auto",
    noise: float = 0.0,
    example_input: Any = None,
    check: bool = True,
    generator: torch.Generator | None = None,
) -> Growth:
    """Insert, after the module at ``after``, a layer or block that starts as the identity, in
    place, so that the deeper model computes the same function.

    Blocks:
        ``"identity"`` (Net2DeeperNet): after a Linear or Conv layer ``h = W x`` followed by an
        idempotent activation ``f`` (``f(f(z)) = f(z)``: ReLU, ReLU6, hardtanh, none), the
        new block computes ``U f(h)`` with ``U = I`` (Linear: ``eye``; Conv: a 3-wide Dirac
        kernel), so that ``f(U f(h)) = f(f(h)) = f(h)``. The module at ``after`` becomes
        ``nn.Sequential(layer, f, U)`` (its parameters move from ``after.weight`` to
        ``after.0.weight``; ``Growth.renamed`` lists them).
        ``"residual"``: any activation, any position: ``h + V f(W h)`` with ``W`` drawn by the
        block's ``auto`` plan and ``V = 0`` (also its bias), so the block is the identity and
        ``V`` gets the first gradient. The module becomes ``nn.Sequential(layer, block)``.
        ``"copy"`` (for a block in an ``nn.Sequential`` or ``nn.ModuleList``, e.g. a
        transformer layer): a copy of the block with every residual branch end
        (:attr:`initscope.Layer.ends_residual`) set to zero is inserted after it; a pre-norm
        block then computes ``x + 0``; a post-norm block is not the identity (error).
        ``"auto"``: ``"copy"`` for a block, ``"identity"`` when the activation allows it,
        else ``"residual"``.

    Args:
        model: the model, changed in place (build the optimizer afterwards).
        after: module path of a Linear/Conv layer, or of a block held in a Sequential or
            ModuleList.
        block: see above.
        noise: add ``noise * std * N(0, 1)`` to the new block's identity or zero weights
            (``std`` from the block's ``auto`` plan) so that it starts to learn at once; the
            function then changes by about that much.
        example_input: a batch the model accepts (needed when ``torch.fx`` cannot trace it,
            and for ``"copy"``); with it the change of the outputs is measured.
        check: with ``example_input`` and ``noise == 0``, undo and raise when the outputs
            changed by more than ``1e-4`` relative.
        generator: for the residual block's first layer and the noise.

    Returns:
        A :class:`Growth` (the block kind, the new parameters, the renamed ones).

    Raises:
        TypeError, ValueError, ``GrowthError``: bad arguments, a block that cannot start as
        the identity here; the model is then bit-identical.
    """
    target = submodule(model, after, "after")
    if block not in _BLOCKS:
        raise ValueError(f"block: expected one of {', '.join(map(repr, _BLOCKS))}, got {block!r}")
    noise = check_real("noise", noise, low=0)
    check_generator(generator)
    parent_path, _, name = after.rpartition(".")
    parent = model.get_submodule(parent_path)
    if not isinstance(target, (nn.Linear, _ConvNd)) or isinstance(target, _ConvTransposeNd):
        if block not in ("auto", "copy"):
            raise GrowthError(
                f"deepen: block={block!r} needs a Linear or Conv layer at {after!r}, "
                f"got {type(target).__name__}"
            )
        return _deepen_copy(model, after, target, parent, name, noise, example_input, check,
                            generator)  # fmt: skip
    if block == "copy":
        raise GrowthError(f"deepen: block='copy' needs a block, {after!r} is a single layer")
    if isinstance(target, _ConvNd) and (target.groups != 1 or target.weight.dim() > 5):
        raise GrowthError(f"deepen: {after!r} is a grouped convolution")
    n = target.out_features if isinstance(target, nn.Linear) else target.out_channels
    facts = _layer_facts(model, after, example_input)
    act, act_at = facts.activation, facts.activation_at
    idempotent = act is None or act.name in _IDEMPOTENT
    if block == "identity" and not (idempotent and facts.norm is None):
        raise GrowthError(
            f"deepen: an identity layer after {after!r} keeps the function only when an "
            f"idempotent activation (relu, relu6, hardtanh, none) follows it directly; it is "
            f"followed by {facts.norm or (act.label() if act else 'nothing')}: use "
            "block='residual'"
        )
    kind = block if block != "auto" else ("identity" if idempotent and facts.norm is None
                                          and act is not None else "residual")  # fmt: skip
    check_untied(model, [after], "deepen")
    new_layer = _square(target, n)
    if kind == "identity":
        _identity_(new_layer)
        parts: list[nn.Module] = [target]
        if act is not None and act.name != "linear":
            parts.append(_act_module(model, act, act_at))
        parts.append(new_layer)
        last = f"{len(parts) - 1}.weight"
        new = nn.Sequential(*parts)
    else:
        from initscope.policy import initialize

        out_layer = _square(target, n)
        body = nn.Sequential(new_layer, _act_module(model, act, act_at), out_layer)
        initialize(body, generator=generator)
        with torch.no_grad():
            out_layer.weight.zero_()
            if out_layer.bias is not None:
                out_layer.bias.zero_()
        new = nn.Sequential(target, Residual(body))
        last = "1.body.2.weight"
    if noise > 0:
        std = plan_std(new, last, None) or 0.0
        w = new.get_parameter(last)
        with torch.no_grad():
            w.add_(noise * std * torch.randn(w.shape, generator=generator, dtype=w.dtype))
    own = {p for p, _ in target.named_parameters()}
    added = tuple(f"{after}.{p}" for p, _ in new.named_parameters() if not p.startswith("0."))
    renamed = {f"{after}.{p}": f"{after}.0.{p}" for p in sorted(own)}
    writer = Writer()
    writer.child(parent, name, new)
    change = verified(model, example_input, writer, check and noise == 0, f"deepen {after!r}")
    return Growth("deepen", after, n, n, added=added, renamed=renamed, block=kind,
                  max_change=change)  # fmt: skip


def _deepen_copy(
    model: nn.Module,
    after: str,
    target: nn.Module,
    parent: nn.Module,
    name: str,
    noise: float,
    example_input: Any,
    check: bool,
    generator: torch.Generator | None,
) -> Growth:
    if not isinstance(parent, (nn.Sequential, nn.ModuleList)) or not all(
        k.isdigit() for k in parent._modules
    ):
        raise GrowthError(
            f"deepen: a block can be inserted only into an nn.Sequential or nn.ModuleList "
            f"(indexed by position); {after!r} sits in a {type(parent).__name__}"
        )
    call = _record_call(model, target, example_input) if example_input is not None else None
    new = copy.deepcopy(target)
    zeroed = _zero_branch_ends(new, call)
    if call is not None:
        args, kwargs = call
        with torch.no_grad():
            modes = [(m, m.training) for m in new.modules()]
            new.eval()
            out = new(*args, **kwargs)
            for m, mode in modes:
                m.training = mode
        out = out[0] if isinstance(out, (tuple, list)) else out
        x = args[0]
        scale = float(x.abs().max()) or 1.0
        if out.shape != x.shape or float((out - x).abs().max()) > 1e-5 * scale:
            raise GrowthError(
                f"deepen: the copy of {after!r} with its residual branch ends at zero is not "
                "the identity (a normalization after the residual add, as in a post-norm "
                "transformer layer?); deepen a layer inside it instead"
            )
    if noise > 0:
        for p in zeroed:
            if p.endswith(".weight") or p == "weight":
                std = plan_std(new, p, call[0][0] if call else None) or 0.0
                w = new.get_parameter(p)
                with torch.no_grad():
                    w.add_(noise * std * torch.randn(w.shape, generator=generator,
                                                     dtype=w.dtype))  # fmt: skip
    prefix = after.rpartition(".")[0]
    prefix = f"{prefix}." if prefix else ""
    pos = int(name)
    items = list(parent._modules.items())
    modules: OrderedDict[str, nn.Module | None] = OrderedDict()
    renamed: dict[str, str] = {}
    for i, (k, m) in enumerate(items):
        j = i if i <= pos else i + 1
        modules[str(j)] = m
        if j != i and m is not None:
            for p, _ in m.named_parameters():
                renamed[f"{prefix}{k}.{p}"] = f"{prefix}{j}.{p}"
        if i == pos:
            modules[str(pos + 1)] = new
    added = tuple(f"{prefix}{pos + 1}.{p}" for p, _ in new.named_parameters())
    writer = Writer()
    writer.attr(parent, "_modules", modules)
    owner = model.get_submodule(after.rpartition(".")[0].rpartition(".")[0])
    if owner is not parent and getattr(owner, "num_layers", None) == len(items):
        writer.attr(owner, "num_layers", len(items) + 1)
    change = verified(model, example_input, writer, check and noise == 0, f"deepen {after!r}")
    width = int(call[0][0].shape[-1]) if call is not None else 0
    zeroed = [f"{prefix}{pos + 1}.{p}" for p in zeroed]
    return Growth("deepen", after, width, width, changed=tuple((p, "zeroed") for p in zeroed),
                  added=added, renamed=renamed, block="copy", max_change=change)  # fmt: skip
