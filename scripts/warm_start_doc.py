"""Run the warm-start and transfer experiments (full mode, seed 0) and write what
docs/warm_start.md shows:

    python scripts/warm_start_doc.py          # about 15 s of CPU

* ``docs/figures/demo_warm_start.png`` and ``docs/figures/demo_transfer.png`` (the demo's figures);
* the tables between ``<!-- numbers:start -->`` and ``<!-- numbers:end -->`` in
  ``docs/warm_start.md``, rendered by :func:`tables` (``tests/test_experiments_warm.py`` re-runs
  the experiments, marked slow, and fails when the page's tables drift from the run).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from initscope import experiments
from initscope.experiments import figures

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "warm_start.md"
START, END = "<!-- numbers:start -->", "<!-- numbers:end -->"


def _mean(a: np.ndarray) -> float:
    return float(np.mean(a))


def tables(warm: experiments.Result, transfer: experiments.Result) -> str:
    """The page's tables: means over seeds, and the claims with their verdicts."""
    w, t = warm, transfer
    lines = [
        f"Regime shift ({w.seeds} seeds, {w.pretrain_steps} pretraining steps, test MSE of "
        f"C / K; new regime variance {w.new_target_var:.2g}):",
        "",
        f"| start | new regime, step 0 | new regime, step {w.steps} | old regime, step 0 "
        f"| old regime, step {w.steps} |",
        "|---|---|---|---|---|",
    ]
    for v in w.variants:
        n, o = w.new_mse[v], w.old_mse[v]
        lines.append(
            f"| {v} | {_mean(n[:, 0]):.2g} | {_mean(n[:, -1]):.2g} | {_mean(o[:, 0]):.2g} "
            f"| {_mean(o[:, -1]):.2g} |"
        )
    lines += [
        "",
        f"Transfer ({t.seeds} seeds, {t.n_samples} samples of the new product, "
        f"{t.steps} fine-tuning steps):",
        "",
        f"| product | head | test MSE, step 0 | test MSE, step {t.steps} | CKA before/after |",
        "|---|---|---|---|---|",
    ]
    for p in t.products:
        for h in t.heads:
            m, c = t.mse[f"{p}/{h}"], t.cka[f"{p}/{h}"]
            lines.append(
                f"| {p} | {h} | {_mean(m[:, 0]):.2g} | {_mean(m[:, -1]):.2g} | {np.mean(c):.3f} |"
            )
    lines += ["", "| claim | measured | reproduced |", "|---|---|---|"]
    for r in (w, t):
        for c in r.claims:
            lines.append(f"| {c.claim} | {c.measured} | {'yes' if c.reproduced else '**no**'} |")
    return "\n".join(lines)


def run() -> tuple[experiments.Result, experiments.Result]:
    return experiments.run("warm_start"), experiments.run("transfer")


def main() -> None:
    warm, transfer = run()
    out = ROOT / "docs" / "figures"
    figures.draw("warm_start", warm, out / "demo_warm_start.png")
    figures.draw("transfer", transfer, out / "demo_transfer.png")
    text = DOC.read_text()
    head, rest = text.split(START)
    _, tail = rest.split(END)
    DOC.write_text(f"{head}{START}\n{tables(warm, transfer)}\n{END}{tail}")


if __name__ == "__main__":
    main()
