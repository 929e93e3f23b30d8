"""Building the data-flow graph that :mod:`initscope.graph` analyses.

Two builders produce the same list of :class:`Node`: :func:`from_fx` (``torch.fx`` symbolic
tracing, nothing runs) and :func:`from_recording` (one real forward on an example input under a
``TorchFunctionMode`` that sees every torch function and tensor method, plus hooks on the leaf
modules). Leaf modules (those that hold parameters directly, activations, dropout, ...) appear
as single nodes; what happens inside them is not recorded.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from initscope._torch import Batch, removing, state_guard

__all__ = ["Node", "ParamRef", "Ref", "from_fx", "from_recording", "is_leaf"]

# Calls that only read metadata: they carry no signal and are not data-flow edges.
_METADATA = frozenset(
    {
        "size",
        "dim",
        "numel",
        "ndimension",
        "getattr",
        "__get__",
        "shape",
        "type",
        "get_device",
        "is_contiguous",
        "stride",
        "element_size",
    }
)


@dataclass(frozen=True)
class Ref:
    """A tensor argument produced by node ``index`` (stands in for it in recorded arguments)."""

    index: int


@dataclass(frozen=True)
class ParamRef:
    """A parameter of the model (by its path in ``named_parameters()``), or a tensor computed
    from it alone (``cls_token.expand(...)``), in a recorded argument list."""

    path: str


@dataclass(eq=False)
class Node:
    """One step of the forward: an input, a leaf-module call, a function call or the output.

    ``name`` is the module path for ``op == "module"`` and the function or method name for
    ``op == "call"``; ``fn`` is the function object (a method name string for tensor methods);
    ``args``/``kwargs`` keep the non-tensor arguments, tensors replaced by :class:`Ref`,
    :class:`ParamRef` for the model's parameters, ``None`` for other tensors that no node
    produced (buffers, constants); ``inputs`` are the
    indices of the nodes whose outputs this step reads, in argument order.
    """

    index: int
    op: str
    name: str
    fn: Any = None
    module: nn.Module | None = None
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    inputs: list[int] = field(default_factory=list)

    @property
    def leaf(self) -> nn.Module:
        """The module an ``op == "module"`` node calls."""
        if self.module is None:
            raise ValueError(f"graph node {self.index} ({self.op} {self.name!r}) calls no module")
        return self.module


def is_leaf(module: nn.Module) -> bool:
    """A module recorded as one node: it has no children, or it is one of torch's fused layers."""
    if isinstance(module, (nn.MultiheadAttention, nn.RNNBase, nn.RNNCellBase)):
        return True
    return next(module.children(), None) is None


def _fn_name(fn: Any) -> str:
    if isinstance(fn, str):
        return fn
    return getattr(fn, "__name__", type(fn).__name__)


def _method_or_fn(func: Any) -> Any:
    """Tensor methods seen by a TorchFunctionMode become their name, as in an fx graph."""
    name = getattr(func, "__name__", None)
    if name and (
        getattr(torch.Tensor, name, None) is func
        or getattr(torch._C.TensorBase, name, None) is func
    ):
        return name
    return func


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return is_leaf(m)


def from_fx(model: nn.Module) -> list[Node]:
    """Trace ``model`` symbolically (nothing runs). Raises whatever ``torch.fx`` raises."""
    graph = _Tracer().trace(model)
    modules = dict(model.named_modules())
    params = {name for name, _ in model.named_parameters()}
    nodes: list[Node] = []
    index: dict[fx.Node, int] = {}
    from_param: dict[fx.Node, ParamRef] = {}

    def ref(a: Any) -> Any:
        if isinstance(a, fx.Node):
            return Ref(index[a]) if a in index else from_param.get(a)
        if isinstance(a, (tuple, list)):
            return type(a)(ref(x) for x in a)
        if isinstance(a, dict):
            return {k: ref(v) for k, v in a.items()}
        return a

    for n in graph.nodes:
        inputs = [index[a] for a in n.all_input_nodes if a in index]
        if n.op == "placeholder":
            node = Node(len(nodes), "input", str(n.target))
        elif n.op == "call_module":
            node = Node(
                len(nodes),
                "module",
                str(n.target),
                module=modules[n.target],
                args=ref(n.args),
                kwargs=ref(dict(n.kwargs)),
                inputs=inputs,
            )
        elif n.op in ("call_function", "call_method"):
            fn = n.target
            name = _fn_name(fn)
            if name in _METADATA or not inputs:  # metadata, or built from constants only
                refs = tree_flatten((ref(n.args), ref(dict(n.kwargs))))[0]
                found = next((r for r in refs if isinstance(r, ParamRef)), None)
                if found is not None and name not in _METADATA:
                    from_param[n] = found  # e.g. cls_token.expand(batch, -1, -1)
                continue
            node = Node(
                len(nodes),
                "call",
                name,
                fn=fn,
                args=ref(n.args),
                kwargs=ref(dict(n.kwargs)),
                inputs=inputs,
            )
        elif n.op == "output":
            node = Node(len(nodes), "output", "output", inputs=inputs)
        else:  # get_attr: parameters read functionally are ParamRefs, buffers constants
            if n.op == "get_attr" and str(n.target) in params:
                from_param[n] = ParamRef(str(n.target))
            continue
        index[n] = node.index
        nodes.append(node)
    return nodes


class _Builder:
    """Collects nodes while the model runs; keeps every tensor seen alive so ids stay unique."""

    def __init__(self, params: dict[int, str] | None = None) -> None:
        self.nodes: list[Node] = []
        self.params = params or {}
        self.producer: dict[int, int] = {}
        self.keep: list[torch.Tensor] = []
        self.depth = 0
        self.pending: list[tuple[list[int], tuple, dict]] = []

    def ref(self, obj: Any) -> Any:
        if isinstance(obj, torch.Tensor):
            i = self.producer.get(id(obj))
            if i is not None:
                return Ref(i)
            path = self.params.get(id(obj))
            return ParamRef(path) if path is not None else None
        if isinstance(obj, (tuple, list)):
            return type(obj)(self.ref(x) for x in obj)
        if isinstance(obj, dict):
            return {k: self.ref(v) for k, v in obj.items()}
        return obj

    def inputs_of(self, *objs: Any) -> list[int]:
        leaves, _ = tree_flatten(objs)
        out: list[int] = []
        for t in leaves:
            if isinstance(t, torch.Tensor):
                i = self.producer.get(id(t))
                if i is not None and i not in out:
                    out.append(i)
        return out

    def add(self, op: str, name: str, outputs: Any, **kw: Any) -> Node | None:
        tensors = [t for t in tree_flatten(outputs)[0] if isinstance(t, torch.Tensor)]
        if op == "call" and not tensors:
            return None
        node = Node(len(self.nodes), op, name, **kw)
        self.nodes.append(node)
        for t in tensors:
            self.keep.append(t)
            self.producer[id(t)] = node.index
        return node


class _Recorder(TorchFunctionMode):
    def __init__(self, builder: _Builder) -> None:
        super().__init__()
        self.b = builder

    def __torch_function__(
        self, func: Callable, types: Any, args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        b = self.b
        if b.depth == 0:
            fn = _method_or_fn(func)
            name = _fn_name(fn)
            if name not in _METADATA:
                b.add(
                    "call",
                    name,
                    out,
                    fn=fn,
                    args=b.ref(args),
                    kwargs=b.ref(kwargs),
                    inputs=b.inputs_of(args, kwargs),
                )
        return out


@contextlib.contextmanager
def _leaf_hooks(model: nn.Module, b: _Builder) -> Iterator[None]:
    def pre(module: nn.Module, args: tuple, kwargs: dict) -> None:
        if b.depth == 0:
            b.pending.append((b.inputs_of(args, kwargs), b.ref(args), b.ref(kwargs)))
        b.depth += 1

    def make_post(path: str) -> Callable:
        def post(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
            b.depth -= 1
            if b.depth == 0:
                inputs, a, k = b.pending.pop()
                b.add("module", path, output, module=module, args=a, kwargs=k, inputs=inputs)

        return post

    with removing() as handles:
        for path, m in model.named_modules():
            if is_leaf(m):
                handles.append(m.register_forward_pre_hook(pre, with_kwargs=True))
                handles.append(m.register_forward_hook(make_post(path), with_kwargs=True))
        yield


def from_recording(model: nn.Module, example_input: Any) -> list[Node]:
    """Record one real forward of ``model`` on ``example_input`` (the model-input convention of
    :class:`initscope._torch.Batch`), in train mode (torch's fused Transformer fast path is off
    there; eval mode if train mode raises, e.g. BatchNorm on a batch of one), leaving the model as
    it was (:func:`initscope._torch.state_guard`)."""
    first_error: Exception | None = None
    params = {id(p): name for name, p in model.named_parameters()}
    for train in (True, False):
        b = _Builder(params)
        try:
            with state_guard(model), torch.no_grad():
                model.train(train)
                for t in tree_flatten(example_input)[0]:
                    if isinstance(t, torch.Tensor):
                        b.add("input", "input", t)
                with _leaf_hooks(model, b), _Recorder(b):
                    out = Batch.of(example_input).call(model)
        except Exception as exc:  # retried in eval mode, then re-raised
            first_error = first_error or exc
            continue
        b.add("output", "output", None, inputs=b.inputs_of(out))
        return b.nodes
    raise RuntimeError(
        f"inspect_model: running the model on example_input failed: "
        f"{type(first_error).__name__}: {first_error}"
    ) from first_error
