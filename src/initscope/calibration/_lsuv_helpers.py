"""Private helpers of :func:`initscope.lsuv`: data handling, layer selection, weight layouts,
batch statistics and the ``torch.distributed`` bridge."""

from __future__ import annotations

import fnmatch
import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias, cast

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parameter import UninitializedParameter
from torch.nn.utils import parametrize

from initscope._torch import Batch
from initscope.graph import layer_kind, norm_kind
from initscope.init import orthogonal_

LayerSelector: TypeAlias = type[nn.Module] | str | Callable[[str, nn.Module], bool]
LayerSpec: TypeAlias = LayerSelector | Sequence[LayerSelector]

# the graph's layer kinds LSUV normalizes by default (initscope.graph.layer_kind)
DEFAULT_KINDS = frozenset({"linear", "conv", "conv_transpose", "attention"})


# ----------------------------------------------------------------------------- data


def take_batches(data: Any, num_batches: int) -> list[Any]:
    """One batch (a tensor, tuple/list or dict) or the first ``num_batches`` of an iterable."""
    if isinstance(data, (Batch, torch.Tensor, tuple, list, Mapping)):
        if num_batches != 1:
            raise ValueError(
                f"num_batches={num_batches} needs a DataLoader (or another iterable of batches); "
                "data is a single batch"
            )
        return [data]
    if isinstance(data, Iterable) and not isinstance(data, (str, bytes)):
        batches = list(itertools.islice(iter(data), num_batches))
        if len(batches) < num_batches:
            raise ValueError(f"data yielded {len(batches)} batch(es), num_batches={num_batches}")
        return batches
    raise TypeError(
        "data: expected a tensor, a tuple/list or dict batch, or a DataLoader; "
        f"got {type(data).__name__}"
    )


def split_batch(batch: Any, get_input: Callable[[Any], Any] | None) -> Batch:
    """The model input of one data batch, as a :class:`initscope._torch.Batch`.

    Default (data batches as a DataLoader yields them): a tensor is the input, a tuple/list's first
    element is the input (the usual ``(inputs, targets)``), a dict is passed as keyword arguments
    (``model(**batch)``), a ``Batch`` is the model input as stated. With ``get_input``: its result
    follows the model-input convention (a tuple/list is ``model(*x)``, a dict ``model(**x)``,
    anything else ``model(x)``).
    """
    if get_input is not None:
        return Batch.of(get_input(batch))
    if isinstance(batch, (Batch, torch.Tensor, Mapping)):
        return Batch.of(batch)
    if isinstance(batch, (tuple, list)):
        if not batch:
            raise ValueError("data: empty batch (an empty tuple/list)")
        return Batch.of(batch[0]) if isinstance(batch[0], Batch) else Batch((batch[0],))
    raise TypeError(
        f"data: cannot take the model input from a batch of type {type(batch).__name__}; "
        "pass get_input=, e.g. get_input=lambda batch: batch['image']"
    )


def pool(batches: list[Batch]) -> Batch:
    """One batch from several: their inputs concatenated along dim 0, leaf by leaf."""
    if len(batches) == 1:
        return batches[0]
    args = concat([b.args for b in batches])
    kwargs = concat([dict(b.kwargs) for b in batches])
    return Batch(tuple(args), kwargs)


def concat(items: list[Any], where: str = "input") -> Any:
    """Concatenate the model inputs of several batches along dim 0, leaf by leaf."""
    first = items[0]
    if isinstance(first, torch.Tensor):
        if not all(isinstance(t, torch.Tensor) and t.shape[1:] == first.shape[1:] for t in items):
            shapes = [tuple(t.shape) if isinstance(t, torch.Tensor) else type(t) for t in items]
            raise ValueError(
                f"data: the batches' {where} cannot be pooled along dim 0 (shapes {shapes}); "
                "use num_batches=1 or batches of equal shape"
            )
        return torch.cat(items, dim=0)
    if isinstance(first, (tuple, list)):
        if any(not isinstance(x, (tuple, list)) or len(x) != len(first) for x in items):
            raise ValueError(f"data: the batches' {where} differ in structure")
        return type(first)(
            concat(list(col), f"{where}[{i}]") for i, col in enumerate(zip(*items, strict=True))
        )
    if isinstance(first, Mapping):
        if any(not isinstance(x, Mapping) or set(x) != set(first) for x in items):
            raise ValueError(f"data: the batches' {where} differ in keys")
        return {k: concat([x[k] for x in items], f"{where}[{k!r}]") for k in first}
    if any(x != first for x in items):
        raise ValueError(f"data: the batches' {where} differ ({first!r} vs others)")
    return first


def check_input(batch: Batch) -> None:
    """ValueError for a model input without tensors, with an empty tensor, or with NaN/inf."""
    tensors = batch.tensors()
    if not tensors:
        raise ValueError("data: the model input holds no tensor")
    for t in tensors:
        if t.numel() == 0:
            raise ValueError(f"data: empty batch (a tensor of shape {tuple(t.shape)})")
        if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all()):
            raise ValueError("data contains NaN or inf")


# ----------------------------------------------------------------------------- layers


def scaled_weight(module: nn.Module) -> torch.Tensor | None:
    """The tensor LSUV scales: ``out_proj.weight`` for attention, ``weight`` otherwise."""
    if isinstance(module, nn.MultiheadAttention):
        return module.out_proj.weight
    w = getattr(module, "weight", None)
    return w if isinstance(w, torch.Tensor) else None


def scaled_bias(module: nn.Module) -> nn.Parameter | None:
    owner = module.out_proj if isinstance(module, nn.MultiheadAttention) else module
    b = getattr(owner, "bias", None)
    return b if isinstance(b, nn.Parameter) else None


def written(module: nn.Module) -> list[torch.Tensor]:
    """The tensors LSUV may write for a selected layer: the scaled weight and bias, and the
    in-projections an attention layer's orthonormal pre-init writes."""
    out = [t for t in (scaled_weight(module), scaled_bias(module)) if t is not None]
    if isinstance(module, nn.MultiheadAttention):
        names = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")
        out += [t for n in names if isinstance(t := getattr(module, n, None), torch.Tensor)]
    return out


def _of_type(t: type[nn.Module]) -> Callable[[str, nn.Module], bool]:
    return lambda path, m: isinstance(m, t)


def _on_path(glob: str) -> Callable[[str, nn.Module], bool]:
    return lambda path, m: fnmatch.fnmatchcase(path, glob)


def _as_bool(f: Callable[[str, nn.Module], object]) -> Callable[[str, nn.Module], bool]:
    return lambda path, m: bool(f(path, m))


def _matcher(spec: LayerSpec | None) -> Callable[[str, nn.Module], bool]:
    if spec is None:
        return lambda path, m: layer_kind(m) in DEFAULT_KINDS
    items = list(spec) if isinstance(spec, (list, tuple)) else [spec]
    preds: list[Callable[[str, nn.Module], bool]] = []
    for item in items:
        if isinstance(item, type) and issubclass(item, nn.Module):
            preds.append(_of_type(item))
        elif isinstance(item, str):
            preds.append(_on_path(item))
        elif callable(item) and not isinstance(item, type):
            preds.append(_as_bool(item))
        else:
            raise TypeError(
                "layers: expected None, an nn.Module subclass, a glob on module paths, a "
                f"predicate (path, module) -> bool, or a list of these; got {item!r}"
            )
    return lambda path, m: any(p(path, m) for p in preds)


def select_layers(model: nn.Module, spec: LayerSpec | None) -> list[tuple[str, nn.Module, str]]:
    """Selected modules in registration order as ``(path, module, reason)``; ``reason`` is empty
    for a layer LSUV can scale and says why not otherwise (a parametrized weight)."""
    match = _matcher(spec)
    inner = {id(m.out_proj) for m in model.modules() if isinstance(m, nn.MultiheadAttention)}
    out = []
    for path, m in model.named_modules():
        if id(m) in inner or not match(path, m):
            continue
        w = scaled_weight(m)
        if w is None:
            continue
        if isinstance(w, UninitializedParameter):
            raise ValueError(
                f"model: layer {path or type(m).__name__!r} is lazy and not materialized yet; "
                "run one forward pass before lsuv"
            )
        owner = m.out_proj if isinstance(m, nn.MultiheadAttention) else m
        reason = ""
        if parametrize.is_parametrized(owner, "weight") or not isinstance(w, nn.Parameter):
            reason = "weight is computed (parametrized), not a plain Parameter: left as is"
        out.append((path, m, reason))
    return out


def channel_dim(module: nn.Module, y: torch.Tensor) -> int:
    """The output's channel axis: 1 for batched conv/norm outputs, the last axis otherwise."""
    kind = layer_kind(module)
    if kind in ("conv", "conv_transpose"):
        # a conv (by type or by behaviour) has torch's conv attributes
        return 1 if y.dim() == len(cast(tuple[int, ...], module.kernel_size)) + 2 else 0
    if norm_kind(module) in ("batch_norm", "instance_norm", "group_norm"):
        return 1 if y.dim() > 1 else 0
    return y.dim() - 1


def scale_channels(module: nn.Module, w: torch.Tensor, s: torch.Tensor, path: str) -> None:
    """``w *= s`` per output channel (ConvTranspose stores (in, out / groups, *k))."""
    s = s.to(device=w.device, dtype=w.dtype)
    if layer_kind(module) == "conv_transpose":
        g = cast(int, module.groups)
        view = w.view(g, w.shape[0] // g, *w.shape[1:])
        view.mul_(s.view(g, 1, -1, *([1] * (w.dim() - 2))))
        return
    if w.shape[0] != s.numel():
        raise ValueError(
            f"per_channel: cannot match the {s.numel()} output channels of {path!r} "
            f"to its weight of shape {tuple(w.shape)}"
        )
    w.mul_(s.view(-1, *([1] * (w.dim() - 1))))


def orthogonalize(module: nn.Module, generator: torch.Generator | None) -> list[torch.Tensor]:
    """Orthonormal weights (Saxe et al. 2014): per E x E slice of an attention in-projection,
    per group of a grouped conv; returns the parameters it wrote. 1-D weights are left as is."""
    if isinstance(module, nn.MultiheadAttention):
        if module.in_proj_weight is not None:
            inputs = [module.in_proj_weight]
            slices = list(module.in_proj_weight.chunk(3, dim=0))
        else:
            inputs = [module.q_proj_weight, module.k_proj_weight, module.v_proj_weight]
            slices = list(inputs)
        for t in slices:
            orthogonal_(t, generator=generator)
        orthogonal_(module.out_proj.weight, generator=generator)
        return [*inputs, module.out_proj.weight]
    w = scaled_weight(module)
    if w is None or w.dim() < 2:
        return []
    groups = cast(int, module.groups) if layer_kind(module) in ("conv", "conv_transpose") else 1
    for t in w.chunk(groups, dim=0):
        orthogonal_(t, generator=generator)
    return [w]


def primary_output(output: Any, path: str) -> torch.Tensor:
    """The tensor LSUV normalizes: the output, or the first element of a tuple (attention)."""
    y = output[0] if isinstance(output, (tuple, list)) and output else output
    if not isinstance(y, torch.Tensor) or not y.is_floating_point() or y.dim() == 0:
        raise TypeError(
            f"layer {path!r}: expected a floating tensor output with at least one dimension "
            "(or a tuple starting with one)"
        )
    return y


# ----------------------------------------------------------------------------- statistics


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def _collective_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def any_rank(flag: bool) -> bool:
    """True if ``flag`` is set on any rank (all-reduce MAX); the flag itself without distributed."""
    if not distributed():
        return flag
    t = torch.tensor([int(flag)], device=_collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def broadcast(tensors: list[torch.Tensor]) -> None:
    if distributed():
        for t in tensors:
            dist.broadcast(t.detach(), src=0)


@dataclass(frozen=True)
class Stats:
    """Count ``n`` per channel; ``mean`` and ``std`` (unbiased) of the whole output, and per
    channel (float64 tensors) when asked for; from sums of y and y^2 (all-reduced across ranks)."""

    n: float
    mean: float
    std: float
    channel_mean: torch.Tensor | None = None
    channel_std: torch.Tensor | None = None


def batch_stats(y: torch.Tensor, ch: int | None, path: str, reduce: bool) -> Stats:
    """Statistics of a layer output, per channel along axis ``ch`` if not None.

    Sums of squares are taken about the local mean (no float32 overflow or cancellation) and
    turned back into raw sums, ``sum y^2 = m2 + (sum y)^2 / n``, so that ranks can add them up
    (``reduce``: all-reduce across the ``torch.distributed`` group)."""
    y = y.detach()
    if y.dtype not in (torch.float32, torch.float64):
        y = y.float()
    if ch is None:
        n = y.numel()
        s1 = y.sum(dtype=torch.float64)
        m2 = (y - (s1 / n).to(y.dtype)).square_().sum(dtype=torch.float64)
        packed = torch.stack((s1.new_tensor(float(n)), s1, m2 + s1 * s1 / n))
    else:
        ch %= y.dim()
        c = y.shape[ch]
        n = y.numel() // c
        dims = [d for d in range(y.dim()) if d != ch]
        s1 = y.sum(dims, dtype=torch.float64) if dims else y.double()
        mu = (s1 / n).to(y.dtype).view([c] + [1] * (y.dim() - 1 - ch))
        d = (y - mu).square_()
        m2 = d.sum(dims, dtype=torch.float64) if dims else d.double()
        packed = torch.cat((s1.new_full((1,), float(n)), s1, m2 + s1 * s1 / n))
    if reduce:
        dist.all_reduce(packed)
    if ch is None:
        n_tot, t1, t2 = packed.tolist()
        n_ch = n_tot
    else:
        packed = packed.cpu()
        c = (len(packed) - 1) // 2
        n_ch, s1, s2 = float(packed[0]), packed[1 : c + 1], packed[c + 1 :]
        n_tot, t1, t2 = n_ch * c, float(s1.sum()), float(s2.sum())
    if n_tot < 2:
        raise ValueError(f"layer {path!r}: its output has fewer than 2 values on the batch")
    if not all(map(math.isfinite, (t1, t2))):
        raise ValueError(f"layer {path!r} produced NaN or inf on the batch")
    mean, std = t1 / n_tot, math.sqrt(max((t2 - t1 * t1 / n_tot) / (n_tot - 1), 0.0))
    if ch is None:
        return Stats(n_ch, mean, std)
    if n_ch < 2:
        raise ValueError(
            f"per_channel: layer {path!r} has a single value per channel on the batch; "
            "use a larger batch or per_channel=False"
        )
    var = (s2 - s1 * s1 / n_ch).div_(n_ch - 1).clamp_min_(0.0)
    return Stats(n_ch, mean, std, s1 / n_ch, var.sqrt_())
