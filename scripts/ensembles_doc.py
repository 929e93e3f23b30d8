"""Make the numbers and the figure of docs/ensembles.md from a run of the ensembles experiment.

    python scripts/ensembles_doc.py           # run (seeds 0 and 1, full), draw, rewrite the block
    python scripts/ensembles_doc.py --check   # run and exit 1 when the doc's block differs

Writes ``docs/figures/demo_ensembles.png`` and replaces the text between the markers
``<!-- ensembles:begin -->`` and ``<!-- ensembles:end -->`` in ``docs/ensembles.md`` with the
table, the claims and the conclusions of the run (``tests/test_ensembles.py`` reruns the
experiment, slow test, and fails when they drift).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "ensembles.md"
FIGURE = ROOT / "docs" / "figures" / "demo_ensembles.png"
BEGIN, END = "<!-- ensembles:begin -->", "<!-- ensembles:end -->"


def render(r: Any, again: Any = None) -> str:
    """The generated block of docs/ensembles.md for result ``r`` (seed 0) and, when given,
    ``again``: the same run with seed 1, summarized as a check of what holds across seeds."""
    from initscope.experiments.ensembles import BARRIER_TOLERANCE

    rows = [
        "| init | test MSE: ensemble mean | average member | ambiguity / member error "
        "| error correlation | CKA, last hidden layer | smallest barrier / loss | distinct basins "
        "| spread in / out of range | 90% coverage in / out of range |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    last = [k for k in r.mean_cka[r.variants[0]] if k.startswith("backbone")][-1]
    for v in r.variants:
        rel = float(r.relative_barrier[v].min())
        basin = "yes" if rel > BARRIER_TOLERANCE else "no"
        rows.append(
            f"| {v} | {r.ensemble_mse[v]:.2e} | {r.member_mse[v]:.2e} "
            f"| {r.ambiguity[v] / r.member_mse[v]:.0%} | {r.error_correlation[v]:.2f} "
            f"| {r.mean_cka[v][last]:.2f} | {rel:.3g} | {basin} "
            f"| {r.spread[v]:.3g} / {r.spread_out[v]:.3g} "
            f"| {r.coverage[v]:.0%} / {r.coverage_out[v]:.0%} |"
        )
    claims = ["| claim | measured | reproduced |", "| --- | --- | --- |"]
    for c in r.claims:
        claims.append(f"| {c.claim} | {c.measured} | {'yes' if c.reproduced else 'no'} |")
    best_mse = min(r.ensemble_mse, key=r.ensemble_mse.get)
    distinct = [v for v in r.variants if float(r.relative_barrier[v].min()) > BARRIER_TOLERANCE]
    lines = [
        f'Run: `python scripts/ensembles_doc.py` (`initscope.experiments.run("ensembles")`, '
        f"seed 0): {r.members} members of width {r.hidden} per init, {r.steps} Adam steps, "
        f"{r.n_train} training prices, {r.n_test} test prices in range and {r.n_test} with "
        f"volatility in {r.out_of_range_volatility[0]}-{r.out_of_range_volatility[1]} (training: "
        f"0.1-0.5); vectorized forward in every step: {'yes' if r.vectorized else 'no'}.",
        "",
        *rows,
        "",
        f"- **Most useful diversity: {r.most_useful}** (coverage closest to "
        f"{r.level:.0%} in and out of range: {r.coverage[r.most_useful]:.0%} / "
        f"{r.coverage_out[r.most_useful]:.0%}). The most accurate ensemble mean: {best_mse} "
        f"({r.ensemble_mse[best_mse]:.2e}).",
        f"- **Distinct basins (barrier > {BARRIER_TOLERANCE:.0%} of the loss, every pair): "
        + ", ".join(f"{v} {'yes' if v in distinct else 'no'}" for v in r.variants)
        + ".**",
        "",
        *claims,
    ]
    if again is not None:
        lines += [
            "",
            "The same run with seed 1 (`initscope demo --only ensembles --seed 1`):",
            "",
            "| init | test MSE: ensemble mean | ambiguity / member error | error correlation "
            "| 90% coverage in / out of range | smallest barrier / loss |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for v in again.variants:
            lines.append(
                f"| {v} | {again.ensemble_mse[v]:.2e} "
                f"| {again.ambiguity[v] / again.member_mse[v]:.0%} "
                f"| {again.error_correlation[v]:.2f} "
                f"| {again.coverage[v]:.0%} / {again.coverage_out[v]:.0%} "
                f"| {float(again.relative_barrier[v].min()):.3g} |"
            )
        held = [c.claim.split(":")[0] for c in again.claims if c.reproduced]
        failed = [c.claim for c in again.claims if not c.reproduced]
        lines += [
            "",
            f"Seed 1: most useful diversity {again.most_useful}; "
            f"{len(held)} of {len(again.claims)} claims hold"
            + (f"; not reproduced: {' '.join(failed)}" if failed else "."),
        ]
    return "\n".join(lines)


def block(text: str) -> str:
    """The generated block currently in ``text`` (between the markers)."""
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[start:end].strip("\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 on drift")
    args = parser.parse_args(argv)
    import torch

    from initscope import experiments
    from initscope.experiments import figures

    t0, c0 = time.perf_counter(), time.process_time()
    result = experiments.run("ensembles")
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"ensembles experiment (seed 0): {wall:.1f} s wall, {cpu:.1f} s CPU")
    again = experiments.run("ensembles", generator=torch.Generator().manual_seed(1))
    text = DOC.read_text()
    new = render(result, again)
    if args.check:
        same = block(text) == new
        print("docs/ensembles.md is up to date" if same else "docs/ensembles.md has drifted")
        return 0 if same else 1
    figures.draw("ensembles", result, FIGURE)
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    DOC.write_text(text[:start] + "\n" + new + "\n" + text[end:])
    print(f"wrote {FIGURE.relative_to(ROOT)} and the block of {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
