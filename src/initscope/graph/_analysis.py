"""The analysis behind :func:`initscope.graph.inspect_model`: categories of the graph's nodes,
the activation and normalization after each layer, residual branches, attention roles, output
layers and plain-stack depths."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any, Literal

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd, _ConvTransposeNd
from torch.nn.modules.instancenorm import _InstanceNorm

from initscope.activations import Activation, from_function, from_module
from initscope.graph import _build as gb

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
    """Classify a module that holds parameters."""
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
    if norm_kind(module) is not None:
        return "norm"
    if isinstance(module, nn.PReLU):
        return "activation"
    return "other"


def norm_kind(module: nn.Module) -> NormKind | None:
    """``"batch_norm"``, ``"layer_norm"``, ``"group_norm"``, ``"rms_norm"``, ``"instance_norm"``
    or ``None``."""
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
            m = n.module
            if norm_kind(m) is not None:
                return "norm"
            if isinstance(m, _SHAPE_MODULES):
                return "shape"
            if from_module(m) is not None:
                return "act"
            return "weight" if own_params(m) else "other"
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
        if self.activation(n) is not None:
            return "act"
        return "other"

    @staticmethod
    def activation(n: gb.Node) -> Activation | None:
        if n.op == "module":
            return from_module(n.module)
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


def _follow_output(g: _Graph, i: int, facts: _Facts) -> None:
    """The normalization and activation applied to node ``i``'s output."""
    cur = i
    while True:
        users = g.users[cur]
        if len(users) != 1:
            return
        u = users[0]
        cat = g.cat[u]
        if cat == "shape":
            cur = u
        elif cat == "norm" and facts.norm is None:
            node = g.nodes[u]
            if node.op == "module":
                facts.norm = norm_kind(node.module)
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
        found.append(_Residual(n.index, cone, end, norms, _feeds_norm(g, n.index)))
    # A pre-norm model's final normalization follows only its last add: that add still ends an
    # accumulating stream. Post-norm blocks renormalize after every add.
    if found and found[-1].post_norm and (len(found) == 1 or not found[-2].post_norm):
        found[-1] = dataclasses.replace(found[-1], post_norm=False)
    return found


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
    while g.cat[j] == "shape" and g.nodes[j].inputs:
        j = g.nodes[j].inputs[0]
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
            and g.cat[n.index] in ("weight", "norm", "act")
            and own_params(n.module)
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
        m = g.nodes[i].module
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
        if b is not None and info["kind"] not in ("norm", "activation"):
            branch_size[b] = branch_size.get(b, 0) + 1

    for m, path, info in records:
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
            branch_layers=branch_size.get(info.get("residual_branch"), 0),
        )
    return records
