"""What a growth step did, as a value that prints and serializes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class Growth:
    """The record of one :func:`~initscope.widen` or :func:`~initscope.deepen`.

    Attributes:
        op: ``"widen"`` or ``"deepen"``.
        target: the module path the call named.
        old_width, new_width: units before and after (widen); the block's width (deepen).
        changed: ``(tensor path, what happened)`` for every parameter or buffer that changed
            shape or values, e.g. ``("fc2.weight", "input columns copied and split 1/k")``.
        added: names of the new parameters (the new units' rows and columns for widen are
            listed in ``changed``; the new block's parameters for deepen).
        renamed: ``old parameter name -> new name`` where a module moved (deepen).
        mapping: for widen, the old unit each new unit copies (``mapping[j]``, ``j >= old``).
        block: for deepen, ``"identity"``, ``"residual"`` or ``"copy"``.
        max_change: the largest ``|f_new(x) - f_old(x)| / max|f_old(x)|`` measured on
            ``example_input`` (``None`` when no input was given).
    """

    op: Literal["widen", "deepen"]
    target: str
    old_width: int
    new_width: int
    changed: tuple[tuple[str, str], ...] = ()
    added: tuple[str, ...] = ()
    renamed: dict[str, str] = field(default_factory=dict)
    mapping: tuple[int, ...] = ()
    block: str | None = None
    max_change: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        d = asdict(self)
        d["changed"] = [list(c) for c in self.changed]
        d["added"] = list(self.added)
        d["mapping"] = list(self.mapping)
        return d

    def __str__(self) -> str:
        if self.op == "widen":
            head = f"widen {self.target!r}: {self.old_width} -> {self.new_width} units"
        else:
            head = f"deepen after {self.target!r}: {self.block} block, width {self.new_width}"
        lines = [head]
        lines += [f"  {p}: {what}" for p, what in self.changed]
        lines += [f"  + {p}" for p in self.added]
        lines += [f"  {a} -> {b}" for a, b in self.renamed.items()]
        if self.max_change is not None:
            lines.append(f"  max |f_new - f_old| / max |f_old| = {self.max_change:.2e}")
        return "\n".join(lines)
