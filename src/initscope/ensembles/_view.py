"""A uniform view of an :class:`Ensemble` or a list of models, for the measures: outputs,
per-member states, ordinary modules for hooks, and an evaluation context that changes nothing."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from initscope.ensembles._ensemble import Ensemble

__all__ = ["Members", "as_args", "first_tensor"]


class Members:
    """A uniform view of an :class:`Ensemble` or a list of models: outputs, per-member state
    (name -> tensor), the module to substitute states into, and ordinary modules for hooks."""

    def __init__(self, members: Ensemble | Sequence[nn.Module]) -> None:
        if isinstance(members, Ensemble):
            self.ensemble: Ensemble | None = members
            self.n = members.n
            self.template: nn.Module = members._template
            params, buffers = members.stacked_parameters(), members.stacked_buffers()
            self.states: list[dict[str, Tensor]] | None = [
                {name: t[k] for name, t in (*params.items(), *buffers.items())}
                for k in range(self.n)
            ]
            self._modules: list[nn.Module] | None = None
            return
        if isinstance(members, nn.Module) or not isinstance(members, Sequence):
            got = type(members).__name__
            raise TypeError(f"members: expected an Ensemble or a list of nn.Module, got {got}")
        for i, m in enumerate(members):
            if not isinstance(m, nn.Module):
                raise TypeError(f"members[{i}]: expected an nn.Module, got {type(m).__name__}")
        if len(members) < 2:
            raise ValueError(f"members: expected at least 2 members, got {len(members)}")
        self.ensemble = None
        self.n = len(members)
        self._modules = list(members)
        self.template = self._modules[0]
        states = [dict([*m.named_parameters(), *m.named_buffers()]) for m in self._modules]
        shapes = [{k: (t.shape, t.dtype) for k, t in s.items()} for s in states]
        # weights and basins need one architecture; predictions do not
        self.states = states if all(s == shapes[0] for s in shapes) else None

    def modules(self) -> list[nn.Module]:
        if self._modules is not None:
            return self._modules
        assert self.ensemble is not None
        return self.ensemble.members()

    def outputs(self, args: tuple) -> Tensor:
        if self.ensemble is not None:
            out = self.ensemble(*args)
        else:
            out = torch.stack([first_tensor(m(*args), "a member's output") for m in self.modules()])
        return first_tensor(out, "the members' output")

    @contextmanager
    def evaluating(self) -> Iterator[None]:
        """Eval mode, no grad, forked global RNG; every module's mode restored on exit."""
        owners: list[nn.Module] = [self.ensemble] if self.ensemble is not None else self.modules()
        modes = [(m, m.training) for o in owners for m in o.modules()]
        try:
            for o in owners:
                o.eval()
            with torch.no_grad(), torch.random.fork_rng(devices=[]):
                yield
        finally:
            for m, mode in modes:
                m.training = mode
            if self.ensemble is not None:
                self.ensemble.train(self.ensemble.training)


def first_tensor(out: Any, what: str) -> Tensor:
    if isinstance(out, Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor):
        return out[0]
    raise TypeError(f"{what}: expected a tensor (or a tuple starting with one), got "
                    f"{type(out).__name__}")  # fmt: skip


def as_args(inputs: Any) -> tuple:
    if isinstance(inputs, Tensor):
        return (inputs,)
    if isinstance(inputs, tuple) and inputs:
        return inputs
    raise TypeError(
        f"inputs: expected a tensor or a tuple of positional arguments, got {type(inputs).__name__}"
    )
