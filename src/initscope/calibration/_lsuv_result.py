"""What :func:`initscope.lsuv` did, per layer: the records it fills during the pass and the
result it returns (private module; the names are re-exported by :mod:`initscope.calibration`)."""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from torch import nn

__all__ = ["LSUVLayer", "LSUVResult", "Status"]

Status = Literal[
    "converged", "not_converged", "dead", "zero_init", "never_ran", "unsupported", "tied"
]


@dataclass(frozen=True)
class LSUVLayer:
    """What LSUV did to one layer.

    ``std_before`` / ``std_after``: standard deviation of the layer's whole output on the batch
    (the pooled batches, all ranks) before and after; ``mean_after`` its mean. ``scale``: the
    factor the weight was multiplied by (``per_channel``: the geometric mean over channels).
    ``status``: ``"converged"`` (``|std - target_std| <= tol``, per channel with ``per_channel``),
    ``"not_converged"`` (``max_iters`` reached), ``"dead"`` (output std 0: cannot be scaled),
    ``"zero_init"`` (all-zero weight left at zero), ``"never_ran"`` (selected but not called on the
    batch), ``"unsupported"`` (a parametrized weight) or ``"tied"`` (its weight is shared with a
    module that ran before it, e.g. an output layer tied to the input embedding: scaling it would
    change what was already measured, so it is left as is and its output measured as it is).
    ``calls``: times the layer ran (a shared layer is scaled on its first call).
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
