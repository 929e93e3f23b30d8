"""Fans: how many inputs one output unit sums (fan_in), how many outputs one input feeds (fan_out).

Variance-preserving schemes scale a weight's variance by ``1 / fan``. torch computes fans from
the shape alone (dim 1 = in, dim 0 = out, times the receptive field), which is wrong for
layouts that store the weight differently. :func:`fans` knows those layouts:

============================== ============================ ========================================
parameter                      stored shape                 fans (``rf`` = product of kernel dims)
============================== ============================ ========================================
Linear / tensor                ``(out, in, *k)``            ``in * rf``, ``out * rf`` (torch's rule)
Conv{1,2,3}d, groups ``g``     ``(out, in / g, *k)``        ``in / g * rf``, ``out / g * r``
ConvTranspose{1,2,3}d          ``(in, out / g, *k)``        ``in / g * rf``, ``out / g * rf``
MultiheadAttention             ``in_proj_weight (3E, E)``   ``E``, ``E`` (per q / k / v slice)
Embedding / EmbeddingBag       ``(num, dim)``               ``1``, ``dim`` (a row is looked up)
Bilinear                       ``(out, in1, in2)``          ``in1 * in2``, ``out``
RNN / LSTM / GRU (and cells)   ``weight_ih (G*H, in)``      ``in``, ``H`` (per gate; ``G`` gates)
============================== ============================ ========================================

``r = prod(ceil(k_i / s_i))`` for kernel ``k`` and stride ``s``: the outputs one input element
actually reaches per output channel, ``rf`` at stride 1 and 1 for a patchify stem (stride ==
kernel, as in ViT), where torch, Keras and JAX count ``rf`` whatever the stride.

Explicit ``in_axis`` / ``out_axis`` follow JAX's ``variance_scaling``: the fans are the product of
the sizes along those axes times the receptive field, the product of all other axes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal, cast, get_args

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.spectral_norm import SpectralNorm
from torch.nn.utils.weight_norm import WeightNorm

__all__ = ["Fans", "FanMode", "fans"]

FanMode = Literal["fan_in", "fan_out", "fan_avg", "fan_geo_avg"]
_FAN_MODES: tuple[str, ...] = get_args(FanMode)
_RNN_WEIGHT = re.compile(r"weight_(ih|hh)(_l\d+(_reverse)?)?")


@dataclass(frozen=True)
class Fans:
    """The fans of one weight.

    ``fan_in`` is the number of terms summed into one output unit, so that
    ``Var(z) = fan_in Var(W) E[x^2]``; ``fan_out`` the number of outputs one input unit feeds
    (the same count for the backward pass);
    ``receptive_field`` is the kernel size already included in both.
    """

    fan_in: int
    fan_out: int
    receptive_field: int = 1

    def __post_init__(self) -> None:
        for field in ("fan_in", "fan_out", "receptive_field"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"Fans.{field} must be an int, got {type(value).__name__}")
            if value < 0:
                raise ValueError(f"Fans.{field} must be >= 0, got {value}")

    @property
    def fan_avg(self) -> float:
        """``(fan_in + fan_out) / 2``, the Glorot compromise between forward and backward."""
        return (self.fan_in + self.fan_out) / 2

    @property
    def fan_geo_avg(self) -> float:
        """``sqrt(fan_in * fan_out)``, JAX's geometric compromise (``mode="fan_geo_avg"``)."""
        return math.sqrt(self.fan_in * self.fan_out)

    def fan(self, mode: FanMode) -> float:
        """The fan named by ``mode``: ``"fan_in"``, ``"fan_out"``, ``"fan_avg"`` or
        ``"fan_geo_avg"``."""
        if not isinstance(mode, str) or mode not in _FAN_MODES:
            raise ValueError(f"mode must be one of {list(_FAN_MODES)}, got {mode!r}")
        return getattr(self, mode)

    def to_dict(self) -> dict:
        """``{"fan_in", "fan_out", "receptive_field"}`` as a dict; ``Fans(**d)`` rebuilds it."""
        return asdict(self)


def fans(
    obj: torch.Tensor | nn.Module,
    name: str = "weight",
    *,
    in_axis: int | Sequence[int] | None = None,
    out_axis: int | Sequence[int] | None = None,
    batch_axis: int | Sequence[int] = (),
) -> Fans:
    """Fans of a tensor (torch's rule) or of the parameter ``name`` of a module (layout aware).

    A parametrized weight (``torch.nn.utils.parametrize``: spectral or weight norm, ...) is read
    without advancing its state: its shape comes from the parametrization evaluated in eval mode
    (no power iteration). The stored tensors of a parametrization
    (``"parametrizations.weight.original"``, weight norm's ``original1``, the legacy hooks'
    ``weight_v`` and ``weight_orig``) have the layout of the weight they make.

    Args:
        obj: a weight tensor, or a module owning the parameter.
        name: the parameter's name on the module, dotted for submodules
            (``"self_attn.in_proj_weight"``); ignored for a tensor.
        in_axis, out_axis: explicit axes, as in JAX. When either is given the layout rules are
            skipped: ``fan_in = prod(shape[in_axis]) * rf``,
            ``fan_out = prod(shape[out_axis]) * rf``, ``rf`` the product of the remaining axes.
            The one not given defaults to torch's (``in_axis=1``, ``out_axis=0``).
        batch_axis: axes left out of every fan, as JAX's ``batch_axis`` (stacked weights of an
            ensemble or of experts); given alone, the other axes follow torch's rule.

    Raises:
        TypeError: ``obj`` is neither a tensor nor a module, ``name`` is not a tensor, or an
            axis is not an int or a sequence of ints.
        ValueError: fewer than 2 dims, an unknown or uninitialized parameter, bad axes.

    Example:
        >>> fans(nn.ConvTranspose2d(8, 4, 3))
        Fans(fan_in=72, fan_out=36, receptive_field=9)
    """
    if isinstance(obj, torch.Tensor):
        module, attr, shape = None, "", tuple(obj.shape)
    elif isinstance(obj, nn.Module):
        module, attr, shape = _resolve(obj, name)
    else:
        raise TypeError(f"obj must be a torch.Tensor or an nn.Module, got {type(obj).__name__}")
    batch = _axes(batch_axis, len(shape), "batch_axis", allow_empty=True)
    if len(shape) - len(batch) < 2:
        what = "the tensor" if module is None else f"parameter {name!r}"
        extra = f" besides batch_axis {batch}" if batch else ""
        raise ValueError(
            f"fans need a tensor with at least 2 dims{extra}; {what} has shape {shape}"
        )
    if in_axis is not None or out_axis is not None or batch:
        kept = [i for i in range(len(shape)) if i not in batch]
        in_axis = kept[1] if in_axis is None else in_axis
        out_axis = kept[0] if out_axis is None else out_axis
        return _axis_fans(shape, in_axis, out_axis, batch)
    if module is not None:
        return _module_fans(module, attr, shape)
    return torch_fans(shape)


def param_shape(module: nn.Module, attr: str) -> tuple[int, ...]:
    """The shape of ``module``'s tensor ``attr``, a parametrization evaluated in eval mode under
    ``no_grad`` (so spectral norm's power iteration does not advance)."""
    if not parametrize.is_parametrized(module, attr):
        return tuple(getattr(module, attr).shape)
    plist = cast(nn.ModuleDict, module.parametrizations)[attr]
    modes = [(m, m.training) for m in plist.modules()]
    try:
        plist.train(False)
        with torch.no_grad():
            return tuple(getattr(module, attr).shape)
    finally:
        for m, training in modes:
            m.training = training


def _resolve(root: nn.Module, name: str) -> tuple[nn.Module, str, tuple[int, ...]]:
    """The module whose layout applies, the parameter's name there, and the stored shape."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    prefix, _, attr = name.rpartition(".")
    try:
        module = root.get_submodule(prefix)
    except AttributeError as exc:
        raise ValueError(f"name {name!r}: {exc}") from None
    stored = _parametrized_stored(root, prefix, attr)
    if parametrize.is_parametrized(module, attr):
        return module, attr, param_shape(module, attr)
    tensor = module._parameters.get(attr, module._buffers.get(attr))
    if tensor is None and attr not in module._parameters:
        tensor = getattr(module, attr, None)
        if tensor is None:
            known = [n for n, _ in module.named_parameters(recurse=False)]
            raise ValueError(
                f"name {name!r}: {type(module).__name__} has no attribute {attr!r}; "
                f"its parameters are {known}"
            )
    if isinstance(tensor, nn.parameter.UninitializedParameter):
        raise ValueError(f"name {name!r} is an uninitialized (lazy) parameter; run a forward first")
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(
            f"name {name!r} of {type(module).__name__} is {type(tensor).__name__}, not a tensor"
        )
    shape = tuple(tensor.shape)
    if stored is not None:
        owner, weight = stored
        if param_shape(owner, weight) == shape:  # the stored tensor is the weight's layout
            return owner, weight, shape
    return module, attr, shape


def _parametrized_stored(root: nn.Module, prefix: str, attr: str) -> tuple[nn.Module, str] | None:
    """``(owner, weight)`` when ``prefix.attr`` stores a parametrized ``owner.weight``: the
    ``original``/``originalN`` of ``torch.nn.utils.parametrize``, or the ``weight_v`` /
    ``weight_orig`` of the legacy weight-norm and spectral-norm hooks."""
    parts = prefix.split(".") if prefix else []
    if len(parts) >= 2 and parts[-2] == "parametrizations" and attr.startswith("original"):
        owner = root.get_submodule(".".join(parts[:-2]))
        return owner, parts[-1]
    owner = root.get_submodule(prefix)
    for hook in owner._forward_pre_hooks.values():
        if isinstance(hook, (WeightNorm, SpectralNorm)) and attr in (
            f"{hook.name}_v",
            f"{hook.name}_orig",
        ):
            return owner, hook.name
    return None


def torch_fans(shape: tuple[int, ...]) -> Fans:
    """torch's rule: ``(shape[1] * rf, shape[0] * rf, rf)``, ``rf`` the product of dims 2 and up."""
    rf = math.prod(shape[2:])
    return Fans(shape[1] * rf, shape[0] * rf, rf)


def _module_fans(module: nn.Module, attr: str, shape: tuple[int, ...]) -> Fans:
    rf = math.prod(shape[2:])
    if isinstance(module, nn.modules.conv._ConvNd) and attr == "weight":
        groups = module.groups
        if module.transposed:  # (in, out / groups, *k)
            return Fans(shape[0] // groups * rf, shape[1] * rf, rf)
        # (out, in / groups, *k): an input element reaches ceil(k / s) positions per spatial dim
        reach = math.prod(-(-k // st) for k, st in zip(shape[2:], module.stride, strict=True))
        return Fans(shape[1] * rf, shape[0] // groups * reach, rf)
    if isinstance(module, nn.MultiheadAttention) and attr == "in_proj_weight":
        return Fans(shape[1], shape[0] // 3)
    if isinstance(module, (nn.Embedding, nn.EmbeddingBag)) and attr == "weight":
        return Fans(1, shape[1])
    if isinstance(module, nn.Bilinear) and attr == "weight":
        return Fans(shape[1] * shape[2], shape[0])
    if isinstance(module, (nn.RNNBase, nn.RNNCellBase)) and _RNN_WEIGHT.fullmatch(attr):
        return Fans(shape[1], module.hidden_size)
    return torch_fans(shape)


def _axes(
    axis: int | Sequence[int], ndim: int, arg: str, allow_empty: bool = False
) -> tuple[int, ...]:
    if isinstance(axis, int) and not isinstance(axis, bool):
        items: tuple = (axis,)
    elif isinstance(axis, Sequence) and not isinstance(axis, str):
        items = tuple(axis)
    else:
        items = (None,)
    if (not items and not allow_empty) or any(
        isinstance(a, bool) or not isinstance(a, int) for a in items
    ):
        raise TypeError(f"{arg} must be an int or a non-empty sequence of ints, got {axis!r}")
    out = []
    for a in items:
        if not -ndim <= a < ndim:
            raise ValueError(f"{arg}={axis!r} is out of range for a {ndim}-dim tensor")
        out.append(a % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"{arg}={axis!r} repeats an axis")
    return tuple(out)


def _axis_fans(shape: tuple[int, ...], in_axis, out_axis, batch: tuple[int, ...] = ()) -> Fans:
    ins = _axes(in_axis, len(shape), "in_axis")
    outs = _axes(out_axis, len(shape), "out_axis")
    if set(ins) & set(outs):
        raise ValueError(f"in_axis {ins} and out_axis {outs} overlap")
    if set(batch) & (set(ins) | set(outs)):
        raise ValueError(f"batch_axis {batch} overlaps in_axis {ins} or out_axis {outs}")
    used = set(ins) | set(outs) | set(batch)
    rf = math.prod(s for i, s in enumerate(shape) if i not in used)
    return Fans(math.prod(shape[i] for i in ins) * rf, math.prod(shape[i] for i in outs) * rf, rf)
