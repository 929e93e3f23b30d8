"""The analysis behind :func:`initscope.graph.inspect_model`: categories of the graph's nodes,
the activation and normalization after each layer, residual branches, attention roles, output
layers and plain-stack depths."""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any, Literal

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd, _ConvTransposeNd
from torch.nn.modules.instancenorm import _InstanceNorm

from initscope.activations import Activation, from_function, from_module
from initscope.graph import _build as gb
from initscope.graph._behaviour import (
    _CONV_OPS,
    _CONV_T_OPS,
    _LINEAR_OPS,
    ParamUse,
    _Op,
    _weight_use,
    behaviour,
)

LayerKind = Literal[
    "linear",
    "conv",
    "conv_transpose",
    "bilinear",
    "embedding",
    "attention",
    "recurrent",
    "norm",
    "activation",
    "scale",
    "other",
]
NormKind = Literal["batch_norm", "layer_norm", "group_norm", "rms_norm", "instance_norm"]

MATRIX_KINDS: frozenset[LayerKind] = frozenset(
    {"linear", "conv", "conv_transpose", "bilinear", "attention"}
)
"""Kinds whose main parameter is a weight matrix or kernel consumed by a matmul-like op."""

_ADD = frozenset({"add", "add_", "__add__", "__radd__", "__iadd__", "iadd"})
_SCALE = frozenset(
    {
        "mul",
        "mul_",
        "__mul__",
        "__rmul__",
        "__imul__",
        "imul",
        "div",
        "div_",
        "__truediv__",
        "__itruediv__",
        "truediv",
        "itruediv",
    }
)
_SHAPE = frozenset(
    {
        "view",
        "reshape",
        "flatten",
        "unflatten",
        "permute",
        "transpose",
        "t",
        "contiguous",
        "squeeze",
        "unsqueeze",
        "clone",
        "getitem",
        "__getitem__",
        "to",
        "float",
        "double",
        "half",
        "bfloat16",
        "type_as",
        "expand",
        "expand_as",
        "view_as",
        "reshape_as",
        "dropout",
        "dropout1d",
        "dropout2d",
        "dropout3d",
        "alpha_dropout",
        "feature_alpha_dropout",
        "split",
        "chunk",
        "unbind",
        "narrow",
        "movedim",
        "swapaxes",
    }
)
_NORM_FUNCS = {
    "layer_norm": "layer_norm",
    "batch_norm": "batch_norm",
    "group_norm": "group_norm",
    "rms_norm": "rms_norm",
    "instance_norm": "instance_norm",
}
_MAX_POOL = frozenset(
    {
        "max_pool1d",
        "max_pool2d",
        "max_pool3d",
        "adaptive_max_pool1d",
        "adaptive_max_pool2d",
        "adaptive_max_pool3d",
        "max_pool1d_with_indices",
        "max_pool2d_with_indices",
        "max_pool3d_with_indices",
    }
)
_MAX_POOL_MODULES = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)
_SHAPE_MODULES = (
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
    nn.Identity,
    nn.Flatten,
    nn.Unflatten,
)


def layer_kind(module: nn.Module) -> LayerKind:
    """Classify a module that holds parameters: torch's own layers by type, any other leaf
    module by what it does (:func:`initscope.graph.behaviour`): ``linear``/``conv`` when a
    matmul-like op consumes one of its parameters (Hugging Face's ``Conv1D``), ``norm`` when it
    normalizes (``LlamaRMSNorm``), ``scale`` for a per-channel scale (LayerScale)."""
    known = _torch_kind(module)
    if known != "other" or not _probe(module):
        return known
    return _BEHAVIOUR_KINDS.get(behaviour(module).kind, "other")


# The layer kinds behaviour can tell (Behaviour.kind is a plain string).
_BEHAVIOUR_KINDS: dict[str, LayerKind] = {
    "linear": "linear",
    "conv": "conv",
    "conv_transpose": "conv_transpose",
    "norm": "norm",
    "scale": "scale",
}


def _probe(module: nn.Module) -> bool:
    """A leaf module holding parameters, of no class torch defines: read by behaviour."""
    return next(module.children(), None) is None and next(module.parameters(), None) is not None


def _torch_kind(module: nn.Module) -> LayerKind:
    if isinstance(module, _ConvTransposeNd):
        return "conv_transpose"
    if isinstance(module, _ConvNd):
        return "conv"
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, nn.Bilinear):
        return "bilinear"
    if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
        return "embedding"
    if isinstance(module, nn.MultiheadAttention):
        return "attention"
    if isinstance(module, (nn.RNNBase, nn.RNNCellBase)):
        return "recurrent"
    if _torch_norm(module) is not None:
        return "norm"
    if isinstance(module, nn.PReLU):
        return "activation"
    return "other"


def norm_kind(module: nn.Module) -> NormKind | None:
    """``"batch_norm"``, ``"layer_norm"``, ``"group_norm"``, ``"rms_norm"``, ``"instance_norm"``
    or ``None``: torch's norms by type, a leaf module holding parameters by what it computes
    (``x * rsqrt(mean(x^2) + eps)`` is ``rms_norm``: ``LlamaRMSNorm``, ``T5LayerNorm``)."""
    known = _torch_norm(module)
    if known is not None or not _probe(module) or _torch_kind(module) != "other":
        return known
    return behaviour(module).norm  # type: ignore[return-value]


def _torch_norm(module: nn.Module) -> NormKind | None:
    if isinstance(module, _BatchNorm):
        return "batch_norm"
    if isinstance(module, _InstanceNorm):
        return "instance_norm"
    if isinstance(module, nn.LayerNorm):
        return "layer_norm"
    if isinstance(module, nn.GroupNorm):
        return "group_norm"
    rms = getattr(nn, "RMSNorm", None)
    if rms is not None and isinstance(module, rms):
        return "rms_norm"
    return None


def own_params(module: nn.Module) -> tuple[str, ...]:
    """Names of the parameters ``module`` holds directly."""
    return tuple(name for name, _ in module.named_parameters(recurse=False))


class _Graph:
    """The node list with the facts the analysis asks for, computed once."""

    def __init__(self, nodes: list[gb.Node]) -> None:
        self.nodes = nodes
        self.users: list[list[int]] = [[] for _ in nodes]
        for n in nodes:
            for i in n.inputs:
                self.users[i].append(n.index)
        self.cat = [self._category(n) for n in nodes]
        self.anc = [0] * len(nodes)  # bitmask of ancestors
        for n in nodes:
            m = 0
            for i in n.inputs:
                m |= self.anc[i] | (1 << i)
            self.anc[n.index] = m
        self.weight_mask = 0
        for n in nodes:
            if self.cat[n.index] == "weight":
                self.weight_mask |= 1 << n.index

    def _category(self, n: gb.Node) -> str:
        if n.op == "module":
            m = n.leaf
            if norm_kind(m) is not None:
                return "norm"
            if isinstance(m, _SHAPE_MODULES):
                return "shape"
            if isinstance(m, _MAX_POOL_MODULES):
                return "maxpool"
            if from_module(m) is not None:
                return "act"
            if own_params(m):
                return "scale" if layer_kind(m) == "scale" else "weight"
            if next(m.children(), None) is None:
                found = behaviour(m).category
                if found in ("act", "shape"):
                    return found
            return "other"
        if n.op != "call":
            return n.op
        if n.name in _ADD:
            return "add" if len(n.inputs) == 2 else "other"
        if n.name in _SCALE and len(n.inputs) == 1:
            return "scale"
        if n.name in _SHAPE and len(n.inputs) == 1:
            return "shape"
        if n.name in _NORM_FUNCS:
            return "norm"
        if n.name in _MAX_POOL and n.inputs:
            return "maxpool"
        if self.activation(n) is not None:
            return "act"
        return "other"

    @staticmethod
    def activation(n: gb.Node) -> Activation | None:
        if n.op == "module":
            m = n.leaf
            act = from_module(m)
            if act is None and not own_params(m) and next(m.children(), None) is None:
                act = behaviour(m).activation
            return act
        return from_function(n.fn, n.args, n.kwargs)

    def incl(self, i: int) -> int:
        return self.anc[i] | (1 << i)

    def walk_back(self, i: int, through: Iterable[str]) -> tuple[int | None, list[int]]:
        """Follow single-input nodes of the given categories back from ``i`` to a weight node;
        returns it (or ``None``) and the nodes passed."""
        passed: list[int] = []
        allowed = set(through)
        while self.cat[i] in allowed and len(self.nodes[i].inputs) >= 1:
            passed.append(i)
            i = self.nodes[i].inputs[0]
        return (i if self.cat[i] == "weight" else None), passed

    def reach_weights(self, starts: Iterable[int], stop: frozenset[str]) -> set[int]:
        """Weight nodes reached walking back from ``starts`` without crossing another weight
        node or a node of a ``stop`` category."""
        seen: set[int] = set()
        found: set[int] = set()
        stack = list(starts)
        while stack:
            i = stack.pop()
            if i in seen:
                continue
            seen.add(i)
            if self.cat[i] == "weight":
                found.add(i)
                continue
            if self.cat[i] in stop:
                continue
            stack.extend(self.nodes[i].inputs)
        return found


def _describe(g: _Graph, i: int) -> str:
    n = g.nodes[i]
    if n.op == "module":
        return n.name
    fn = n.fn
    mod = getattr(fn, "__module__", "") or ""
    if isinstance(fn, str):
        return f"Tensor.{fn}"
    if mod.startswith("torch.nn.functional") or mod == "torch._C._nn":
        return f"F.{n.name}"
    return f"torch.{n.name}"


@dataclass
class _Facts:
    activation: Activation | None = None
    activation_at: str | None = None
    input_activation: Activation | None = None
    input_activation_at: str | None = None
    norm: str | None = None
    norm_path: str | None = None
    ends_residual: bool = False
    residual_branch: int | None = None
    post_norm: bool = False
    attention_role: str | None = None
    is_output: bool = False
    is_input: bool = False
    stack_depth: int = 1
    input_scale: float = 1.0


def _follow_output(g: _Graph, i: int, facts: _Facts) -> None:
    """The normalization and activation applied to node ``i``'s output."""
    cur = i
    while True:
        users = g.users[cur]
        if len(users) != 1:
            return
        u = users[0]
        cat = g.cat[u]
        if cat in ("shape", "maxpool"):
            cur = u
        elif cat == "norm" and facts.norm is None:
            node = g.nodes[u]
            if node.op == "module":
                facts.norm = norm_kind(node.leaf)
                facts.norm_path = node.name
            else:
                facts.norm = _NORM_FUNCS[node.name]
            cur = u
        elif cat == "act":
            facts.activation = g.activation(g.nodes[u])
            facts.activation_at = _describe(g, u)
            return
        else:
            return


@dataclass(frozen=True)
class _Residual:
    add: int
    cone: int  # bitmask: nodes on the branch (descendants of the fork, ancestors of it)
    end: int  # the weight node that ends the branch
    end_norms: tuple[int, ...]
    post_norm: bool  # the add's output goes straight into a normalization
    fork: int = -1  # the node both operands of the add descend from


def _residuals(g: _Graph) -> list[_Residual]:
    found: list[_Residual] = []
    for n in g.nodes:
        if g.cat[n.index] != "add":
            continue
        a, b = n.inputs
        common = g.incl(a) & g.incl(b)
        if not common:
            continue
        fork = common.bit_length() - 1
        outside = ~g.incl(fork)
        cone_a, cone_b = g.incl(a) & outside, g.incl(b) & outside
        wa, wb = (cone_a & g.weight_mask).bit_count(), (cone_b & g.weight_mask).bit_count()
        if wa == wb:
            continue
        branch, cone = (a, cone_a) if wa > wb else (b, cone_b)
        end, passed = g.walk_back(branch, ("shape", "norm", "act", "scale"))
        if end is None:
            continue
        norms = tuple(i for i in passed if g.cat[i] == "norm" and g.nodes[i].op == "module")
        found.append(_Residual(n.index, cone, end, norms, _feeds_norm(g, n.index), fork))
    # A pre-norm stack's final normalization follows only its last add: that add still ends an
    # accumulating stream (an encoder's final norm too, in an encoder-decoder). Post-norm blocks
    # renormalize after every add, and the norm's output is where the next block forks.
    forks = {r.fork for r in found}
    out = list(found)
    for i, r in enumerate(found):
        if not r.post_norm or (i > 0 and found[i - 1].post_norm):
            continue
        norm = _norm_after(g, r.add)
        if norm is not None and not forks & _shape_chain(g, norm):
            out[i] = dataclasses.replace(r, post_norm=False)
    return out


def _shape_chain(g: _Graph, i: int) -> set[int]:
    """``i`` and the nodes after it through single-user shape nodes (reshapes, dropout)."""
    out = {i}
    while len(g.users[i]) == 1 and g.cat[g.users[i][0]] == "shape":
        i = g.users[i][0]
        out.add(i)
    return out


def _norm_after(g: _Graph, i: int) -> int | None:
    while len(g.users[i]) == 1:
        i = g.users[i][0]
        if g.cat[i] == "norm":
            return i
        if g.cat[i] != "shape":
            return None
    return None


def _feeds_norm(g: _Graph, i: int) -> bool:
    while len(g.users[i]) == 1:
        i = g.users[i][0]
        if g.cat[i] == "norm":
            return True
        if g.cat[i] != "shape":
            return False
    return False


def _input_activation(g: _Graph, i: int) -> tuple[Activation | None, str | None]:
    inputs = g.nodes[i].inputs
    if not inputs:
        return None, None
    j = inputs[0]
    while g.cat[j] in ("shape", "maxpool") and g.nodes[j].inputs:
        j = g.nodes[j].inputs[0]  # max pooling keeps the activation's gain (a max of its outputs)
    if g.cat[j] != "act":
        return None, None
    return g.activation(g.nodes[j]), _describe(g, j)


def _sdpa_roles(g: _Graph, roles: dict[int, str]) -> None:
    """Projections feeding ``scaled_dot_product_attention`` (q, k, v) and reading its output."""
    for n in g.nodes:
        if n.op != "call" or n.name != "scaled_dot_product_attention":
            continue
        sources: dict[int, list[str]] = {}
        for role, arg in zip("qkv", n.args[:3], strict=False):
            if isinstance(arg, gb.Ref):
                w, _ = g.walk_back(arg.index, ("shape",))
                if w is not None:
                    sources.setdefault(w, []).append(role)
        for w, rs in sources.items():
            roles.setdefault(w, "qkv" if len(rs) == 3 else rs[0] if len(rs) == 1 else "qkv")
        cur = n.index
        while len(g.users[cur]) == 1:
            cur = g.users[cur][0]
            if g.cat[cur] == "weight":
                roles.setdefault(cur, "out")
                break
            if g.cat[cur] != "shape":
                break


def _stack_depths(g: _Graph, weights: list[int]) -> dict[int, int]:
    """Longest chain of weight nodes without a normalization in between, through each."""
    plain = frozenset({"norm"})
    known = set(weights)
    pred = {w: g.reach_weights(g.nodes[w].inputs, plain) & known for w in weights}
    before: dict[int, int] = {}
    for w in weights:  # weights are in topological order
        before[w] = 1 + max((before[p] for p in pred[w]), default=0)
    after = dict.fromkeys(weights, 1)
    for w in reversed(weights):
        for p in pred[w]:
            after[p] = max(after[p], after[w] + 1)
    return {w: before[w] + after[w] - 1 for w in weights}


Record = tuple[nn.Module, str, dict[str, Any]]


def analyze(model: nn.Module, nodes: list[gb.Node]) -> list[Record]:
    """Per module holding parameters, in execution order: ``(module, path, facts)``, the facts
    being the fields of :class:`initscope.graph.Layer` except ``index``."""
    g = _Graph(nodes)
    facts: dict[int, _Facts] = {}  # first call of each module -> facts
    first: dict[int, int] = {}  # id(module) -> node index of first call
    calls: dict[int, int] = {}
    for n in nodes:
        if (
            n.op == "module"
            and g.cat[n.index] in ("weight", "norm", "act", "scale")
            and own_params(n.leaf)
        ):
            key = id(n.module)
            calls[key] = calls.get(key, 0) + 1
            if key not in first:
                first[key] = n.index
                facts[n.index] = _Facts()
    for i, f in facts.items():
        _follow_output(g, i, f)

    residuals = _residuals(g)
    branch_of: dict[int, int] = {}
    for r_index, r in enumerate(residuals):
        facts_end = facts.get(r.end)
        if facts_end is not None:
            facts_end.ends_residual = True
        for j in r.end_norms:
            if j in facts:
                facts[j].ends_residual = True
        for i in facts:
            if r.cone >> i & 1:
                branch_of.setdefault(i, r_index)
    for i, r_index in branch_of.items():
        facts[i].residual_branch = r_index
        facts[i].post_norm = residuals[r_index].post_norm
    for i, f in facts.items():
        f.input_activation, f.input_activation_at = _input_activation(g, i)
        f.input_scale = _input_scale(g, i)

    roles: dict[int, str] = {}
    _sdpa_roles(g, roles)
    for i, role in roles.items():
        if i in facts:
            facts[i].attention_role = role

    outputs = [n.index for n in nodes if n.op == "output"]
    for i in g.reach_weights(outputs, frozenset()):
        if i in facts and not facts[i].ends_residual:
            facts[i].is_output = True

    weights = [i for i in facts if g.cat[i] == "weight"]
    for i in weights:
        facts[i].is_input = not g.reach_weights(g.nodes[i].inputs, frozenset())
    for i, depth in _stack_depths(g, weights).items():
        facts[i].stack_depth = depth

    return _layers(model, g, facts, calls, residuals)


def _constant(node: gb.Node) -> float | None:
    """The constant factor of a one-input ``mul``/``div`` node (``x * c``, ``x / c``)."""
    nums = [
        a
        for a in (*node.args, *node.kwargs.values())
        if isinstance(a, numbers.Real) and not isinstance(a, bool)
    ]
    if len(nums) != 1 or not math.isfinite(float(nums[0])):
        return None
    c = float(nums[0])
    if "div" in node.name:
        return 1.0 / c if c != 0 else None
    return c


def _input_scale(g: _Graph, i: int) -> float:
    """The product of constant factors applied to a layer's input since the previous op
    (T5 multiplies the decoder output by ``d^-0.5`` before the tied head)."""
    inputs = g.nodes[i].inputs
    factor = 1.0
    j = inputs[0] if inputs else None
    while j is not None and g.cat[j] in ("shape", "scale") and g.nodes[j].inputs:
        if g.cat[j] == "scale":
            c = _constant(g.nodes[j])
            if c is None:
                break
            factor *= c
        j = g.nodes[j].inputs[0]
    return factor


def _source(g: _Graph, j: int) -> int | None:
    """The weight node a value comes from, walking back through shapes, scales, norms and
    concatenations (at a node with several inputs, the first one a weight layer feeds)."""
    seen = 0
    while g.cat[j] != "weight" and seen < 64:
        seen += 1
        inputs = [k for k in g.nodes[j].inputs if g.cat[k] == "weight" or g.anc[k] & g.weight_mask]
        if not inputs:
            return None
        j = inputs[0]
    return j if g.cat[j] == "weight" else None


def _chain(g: _Graph, i: int) -> tuple[int, float, bool]:
    """Follow an embedding's output through shapes, constant scales and sums with other
    values: the last node reached, the constant factor before the first sum, whether it
    was summed."""
    cur, scale, summed = i, 1.0, False
    while len(g.users[cur]) == 1:
        u = g.users[cur][0]
        cat = g.cat[u]
        if cat == "shape":
            cur = u
        elif cat == "scale" and not summed and _constant(g.nodes[u]) is not None:
            scale *= _constant(g.nodes[u]) or 1.0
            cur = u
        elif cat == "add":
            summed, cur = True, u
        else:
            break
    return cur, scale, summed


def _param_uses(g: _Graph) -> dict[str, tuple[int, int | str]]:
    """Parameter path -> (node, argument) of its first functional use in the graph."""
    found: dict[str, tuple[int, int | str]] = {}
    for n in g.nodes:
        if n.op != "call":
            continue
        items = [*enumerate(n.args), *n.kwargs.items()]
        for pos, a in items:
            for r in a if isinstance(a, (tuple, list)) else (a,):
                if isinstance(r, gb.ParamRef) and r.path not in found:
                    found[r.path] = (n.index, pos)
    return found


def _graph_use(
    g: _Graph, i: int, pos: int | str, shape: tuple[int, ...]
) -> tuple[ParamUse | None, int | None]:
    """How the graph uses a parameter read functionally at argument ``pos`` of node ``i``, and
    the weight node it is combined with (for summed and concatenated parameters)."""
    while not g.nodes[i].inputs and len(g.users[i]) == 1:  # cls_token.expand(...) -> cat
        i, pos = g.users[i][0], -1
    node = g.nodes[i]
    name = node.name
    if name in _LINEAR_OPS | _CONV_OPS | _CONV_T_OPS:
        return _weight_use(_Op(name, node.fn, node.args, node.kwargs), pos, shape), None
    partner = next((w for k in node.inputs if (w := _source(g, k)) is not None), None)
    if name in ("cat", "concat", "concatenate"):
        return ParamUse("token", name), partner
    if name in _ADD:
        return ParamUse("position", name), partner
    if name in _SCALE:
        return ParamUse("scale", name), partner
    return None, None


def _embedding_groups(
    g: _Graph, facts: dict[int, _Facts], path_of: dict[int, str]
) -> dict[int, dict[str, Any]]:
    """Per embedding node: the constant factor on its output, the embeddings summed with it,
    and the normalization after the sum."""
    emb = [i for i in facts if layer_kind(g.nodes[i].leaf) == "embedding"]
    ends = {i: _chain(g, i) for i in emb}
    out: dict[int, dict[str, Any]] = {}
    for i in emb:
        end, scale, summed = ends[i]
        group = tuple(path_of[j] for j in emb if j != i and summed and ends[j][0] == end)
        info: dict[str, Any] = {"output_scale": scale, "summed_with": group}
        cur = end
        while len(g.users[cur]) == 1 and g.cat[g.users[cur][0]] == "shape":
            cur = g.users[cur][0]
        users = g.users[cur]
        if summed and len(users) == 1 and g.cat[users[0]] == "norm" and facts[i].norm is None:
            node = g.nodes[users[0]]
            if node.op == "module":
                info.update(norm=norm_kind(node.leaf), norm_path=node.name)
            else:
                info.update(norm=_NORM_FUNCS[node.name])
        out[i] = info
    return out


def _param_info(
    g: _Graph,
    m: nn.Module,
    path: str,
    uses: dict[str, tuple[int, int | str]],
    path_of: dict[int, str],
) -> dict[str, Any]:
    """``param_fans``, ``param_roles`` and ``param_partners`` of a module's own parameters:
    from what its own forward does (a leaf of no torch class), else from the ops of the model
    that read them functionally."""
    found: dict[str, ParamUse] = {}
    partners: dict[str, str] = {}
    if _probe(m) and _torch_kind(m) == "other":
        found.update(behaviour(m).uses)
    for n, p in m.named_parameters(recurse=False):
        full = f"{path}.{n}" if path else n
        if n in found or full not in uses:
            continue
        use, partner = _graph_use(g, *uses[full], tuple(p.shape))
        if use is not None:
            found[n] = use
            module = g.nodes[partner].module if partner is not None else None
            if partner is not None and module is not None:
                partners[n] = path_of.get(partner) or next(
                    (q for i, q in path_of.items() if g.nodes[i].module is module), ""
                )
    return {
        "param_fans": {n: u.fans for n, u in found.items() if u.fans is not None},
        "param_roles": {n: u.role for n, u in found.items()},
        "param_partners": partners,
    }


def _layers(
    model: nn.Module,
    g: _Graph,
    facts: dict[int, _Facts],
    calls: dict[int, int],
    residuals: list[_Residual],
) -> list[Record]:
    owners: dict[int, list[str]] = {}
    for path, m in model.named_modules(remove_duplicate=False):
        for _, p in m.named_parameters(recurse=False):
            owners.setdefault(id(p), [])
            if path not in owners[id(p)]:
                owners[id(p)].append(path)
    paths = {id(m): path for path, m in model.named_modules()}
    L = len(residuals)
    branch_size: dict[int, int] = {}

    records: list[tuple[nn.Module, str, dict[str, Any]]] = []
    for i, f in sorted(facts.items()):
        m = g.nodes[i].leaf
        path = paths.get(id(m), g.nodes[i].name)
        info: dict[str, Any] = {fld.name: getattr(f, fld.name) for fld in fields(f)}
        info.update(kind=layer_kind(m), calls=calls[id(m)])
        if isinstance(m, nn.MultiheadAttention):
            out = {
                **info,
                "kind": "linear",
                "attention_role": "out",
                "input_activation": None,
                "input_activation_at": None,
            }
            info.update(
                activation=None,
                activation_at=None,
                norm=None,
                norm_path=None,
                ends_residual=False,
                is_output=False,
                attention_role="qkv",
            )
            records.append((m, path, info))
            records.append((m.out_proj, paths.get(id(m.out_proj), f"{path}.out_proj"), out))
        else:
            records.append((m, path, info))
    seen = {id(m) for m, _, _ in records}
    for path, m in model.named_modules():
        if id(m) not in seen and own_params(m):
            records.append((m, path, {"kind": layer_kind(m), "calls": 0}))
            seen.add(id(m))

    for _, _, info in records:
        b = info.get("residual_branch")
        if b is not None and info["kind"] not in ("norm", "activation", "scale"):
            branch_size[b] = branch_size.get(b, 0) + 1

    node_of = {id(g.nodes[i].module): i for i in facts}
    path_of = {i: paths.get(id(g.nodes[i].module), g.nodes[i].name) for i in facts}
    groups = _embedding_groups(g, facts, path_of)
    uses = _param_uses(g)
    names: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), []).append(name)
    for m, path, info in records:
        at = node_of.get(id(m))
        info.update(_param_info(g, m, path, uses, path_of))
        info["param_aliases"] = {
            n: tuple(a for a in names.get(id(p), []) if a != (f"{path}.{n}" if path else n))
            for n, p in m.named_parameters(recurse=False)
        }
        if at is not None and at in groups and info.get("kind") == "embedding":
            info.update(groups[at])
    for m, path, info in records:
        branch = info.get("residual_branch")
        tied = sorted(
            {
                o
                for _, p in m.named_parameters(recurse=False)
                for o in owners.get(id(p), [])
                if o != path
            }
        )
        info.update(
            params=own_params(m),
            residual_depth=L,
            tied_to=tuple(tied),
            branch_layers=0 if branch is None else branch_size.get(branch, 0),
        )
    return records
