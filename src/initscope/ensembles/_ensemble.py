"""The stacked ensemble: ``n`` members of one architecture run as one ``torch.vmap`` call.

PyTorch's model-ensembling recipe: the members' parameters and buffers are stacked along a new
first dim (``torch.func.stack_module_state``) and all members run as one
``torch.func.functional_call`` under ``torch.vmap``.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state

from initscope._torch import check_int
from initscope.policy import Plan

__all__ = ["Ensemble"]

logger = logging.getLogger("initscope.ensembles")


def _key(name: str) -> str:
    return name.replace(".", "__")


def _stack(outputs: list[Any]) -> Any:
    """Stack per-member outputs on a new first dim, through tuples, lists and dicts."""
    first = outputs[0]
    if isinstance(first, Tensor):
        return torch.stack(outputs)
    if isinstance(first, (tuple, list)):
        return type(first)(_stack(list(parts)) for parts in zip(*outputs, strict=True))
    if isinstance(first, Mapping):
        return {key: _stack([o[key] for o in outputs]) for key in first}
    raise TypeError(f"cannot stack member outputs of type {type(first).__name__}")


class Ensemble(nn.Module):
    """``n`` members of one architecture, their parameters and buffers stacked on a first dim.

    ``ens(*args, **kwargs)`` runs every member on the same inputs and returns the outputs
    stacked, ``(n, ...)``: one ``torch.func.functional_call`` under ``torch.vmap``
    (``randomness="different"``: each member its own dropout mask). Gradients reach the stacked
    parameters (``ens.parameters()``): summing the members' losses and stepping an optimizer
    trains every member as if alone (each member's loss depends only on its own slice).

    A model ``vmap`` cannot run (data-dependent Python control flow, ``.item()``, in-place updates
    of unstacked state) falls back to a loop over the members on the same stacked tensors: a
    ``UserWarning`` and a log record say so, ``ens.vectorized`` is then ``False`` and
    ``ens.fallback_reason`` holds vmap's error. The decision is made on the first call in each
    mode (train, eval); buffers changed by the failed attempt are restored first.

    Attributes:
        n: the number of members.
        plans, presets, scales, seed: how :func:`ensemble` drew each member (empty / None
            when built from models).
    """

    _template: nn.Module  # set through __dict__: not a registered submodule

    def __init__(self, members: Sequence[nn.Module], *, vectorize: bool = True) -> None:
        if isinstance(members, nn.Module) or not isinstance(members, Sequence):
            raise TypeError("members: expected a list of nn.Module")
        if not members:
            raise ValueError("members: expected at least one model")
        for i, m in enumerate(members):
            if not isinstance(m, nn.Module):
                raise TypeError(f"members[{i}]: expected an nn.Module, got {type(m).__name__}")
        ref = {n: (t.shape, t.dtype) for n, t in _tensors(members[0])}
        if not any(True for _ in members[0].parameters()):
            raise ValueError("members: the model has no parameters to stack")
        for i, m in enumerate(members[1:], 1):
            got = {n: (t.shape, t.dtype) for n, t in _tensors(m)}
            if got != ref:
                diff = sorted(set(got.items()) ^ set(ref.items()), key=str)[:3]
                raise ValueError(
                    f"members[{i}]: its parameters/buffers differ from member 0's: {diff}"
                )
        super().__init__()
        params, buffers = stack_module_state(list(members))
        persistent = set(members[0].state_dict())
        self._param_names = list(params)
        self._buffer_names = list(buffers)
        keys = [_key(n) for n in (*self._param_names, *self._buffer_names)]
        if len(set(keys)) != len(keys):
            raise ValueError("members: parameter names collide once '.' is replaced by '__'")
        for name, t in params.items():
            self.register_parameter(_key(name), nn.Parameter(t, requires_grad=t.requires_grad))
        for name, t in buffers.items():
            self.register_buffer(_key(name), t, persistent=name in persistent)
        # The structure the stacked tensors are substituted into; not a registered submodule,
        # so its own tensors are neither parameters of the ensemble nor saved with it.
        self.__dict__["_template"] = copy.deepcopy(members[0])
        self.n = len(members)
        self.vectorize = vectorize
        self.fallback_reason: str | None = None
        self._vmap_ok: dict[bool, bool] = {}
        self.plans: list[Plan] = []
        self.presets: list[str] = []
        self.scales: list[float] = []
        self.seed: int | None = None
        self.train(members[0].training)

    # ----------------------------------------------------------------- access

    def __len__(self) -> int:
        return self.n

    def stacked_parameters(self) -> dict[str, Tensor]:
        """``{member parameter name: stacked tensor (n, *shape)}`` (the ensemble's parameters)."""
        return {n: getattr(self, _key(n)) for n in self._param_names}

    def stacked_buffers(self) -> dict[str, Tensor]:
        """``{member buffer name: stacked tensor (n, *shape)}``."""
        return {n: getattr(self, _key(n)) for n in self._buffer_names}

    def member(self, k: int) -> nn.Module:
        """Member ``k`` as an ordinary module: a copy holding its current values (detached,
        ``requires_grad`` as in the members, mode as the ensemble's)."""
        k = check_int("k", k, low=0)
        if k >= self.n:
            raise ValueError(f"k: expected 0 <= k < {self.n}, got {k}")
        m = copy.deepcopy(self._template)
        device = next(iter(self.parameters())).device
        m.to(device)
        with torch.no_grad():
            for name, t in m.named_parameters():
                t.copy_(getattr(self, _key(name))[k])
            for name, b in m.named_buffers():
                b.copy_(getattr(self, _key(name))[k])
        return m.train(self.training)

    def members(self) -> list[nn.Module]:
        """Every member as an ordinary module (see :meth:`member`)."""
        return [self.member(k) for k in range(self.n)]

    @property
    def vectorized(self) -> bool | None:
        """Whether the last forward in the current mode ran under vmap (None: not run yet)."""
        if not self.vectorize:
            return False
        return self._vmap_ok.get(self.training)

    def train(self, mode: bool = True) -> Ensemble:
        super().train(mode)
        self._template.train(mode)
        return self

    def extra_repr(self) -> str:
        return f"n={self.n}, member={type(self._template).__name__}"

    # ----------------------------------------------------------------- forward

    def _call(self, k: int | None, args: tuple, kwargs: dict) -> Any:
        params = self.stacked_parameters()
        buffers = self.stacked_buffers()
        if k is not None:
            state = {n: t[k] for n, t in (*params.items(), *buffers.items())}
            return functional_call(self._template, state, args, kwargs)

        def one(p: dict[str, Tensor], b: dict[str, Tensor]) -> Any:
            return functional_call(self._template, (p, b), args, kwargs)

        return torch.vmap(one, randomness="different")(params, buffers)

    def _loop(self, args: tuple, kwargs: dict) -> Any:
        return _stack([self._call(k, args, kwargs) for k in range(self.n)])

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if not self.vectorize:
            return self._loop(args, kwargs)
        mode = self.training
        known = self._vmap_ok.get(mode)
        if known is False:
            return self._loop(args, kwargs)
        if known:
            return self._call(None, args, kwargs)
        saved = [(b, b.detach().clone()) for b in self.buffers()]
        try:
            out = self._call(None, args, kwargs)
        except Exception as vmap_error:  # decided below: a loop that works means vmap can't
            self._restore(saved)
            try:
                out = self._loop(args, kwargs)
            except Exception:
                self._restore(saved)
                raise
            self._vmap_ok[mode] = False
            self.fallback_reason = f"{type(vmap_error).__name__}: {vmap_error}"
            message = (
                f"initscope.ensemble: torch.vmap cannot run {type(self._template).__name__} in "
                f"{'train' if mode else 'eval'} mode ({self.fallback_reason.splitlines()[0]}); "
                f"running the {self.n} members in a loop instead"
            )
            logger.warning(message)
            warnings.warn(message, UserWarning, stacklevel=2)
            return out
        self._vmap_ok[mode] = True
        return out

    @staticmethod
    def _restore(saved: list[tuple[Tensor, Tensor]]) -> None:
        with torch.no_grad():
            for b, copy_ in saved:
                b.copy_(copy_)


def _tensors(m: nn.Module) -> list[tuple[str, Tensor]]:
    return [*m.named_parameters(), *m.named_buffers()]
