"""``initscope demo``: reproduce the classic initialization results, show what they leave out;
write figures and a report."""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path
from typing import Any

from initscope.cli._common import CLIError
from initscope.experiments import EXPERIMENTS

# Experiments whose data set ships with scikit-learn (its bundled digits).
_NEEDS_SKLEARN = ("symmetry", "xavier_vs_he", "deep_relu", "normalization", "beyond_guide")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="reproduce the classic weight-initialization results (figures, report.html)",
        description="Run the experiments (" + ", ".join(EXPERIMENTS) + "), draw one figure "
        "each, and write DIR/report.html (self-contained) and DIR/results.json. Each states a "
        "claim, measures it and says whether it reproduced; the claims that do not reproduce are "
        "reported with their numbers. Seeded and deterministic; CPU only, a few minutes on 2 "
        "cores (--quick: well under a minute).",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("demo-output"),
        metavar="DIR",
        help="output folder (default: demo-output)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes and short training (smoke test)"
    )
    parser.add_argument(
        "--only",
        metavar="NAME[,NAME]",
        default=None,
        help="run only these experiments: " + ", ".join(EXPERIMENTS),
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every experiment (default 0)")
    parser.set_defaults(func=run)


def parse_only(text: str | None) -> list[str]:
    """``--only`` as a list in the demo's order; all experiments when ``text`` is None."""
    if text is None:
        return list(EXPERIMENTS)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in EXPERIMENTS]
    if not names or unknown:
        got = ", ".join(unknown) if unknown else repr(text)
        raise CLIError(f"--only: unknown experiment {got}; valid: {', '.join(EXPERIMENTS)}")
    return [n for n in EXPERIMENTS if n in names]


def _has_sklearn() -> bool:
    return importlib.util.find_spec("sklearn") is not None


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    import initscope
    from initscope import experiments
    from initscope.experiments import figures as drawing
    from initscope.experiments import reporting

    names = parse_only(args.only)
    if any(n in _NEEDS_SKLEARN for n in names) and not _has_sklearn():
        raise CLIError(
            "the digits experiments (" + ", ".join(_NEEDS_SKLEARN) + ") need scikit-learn: "
            "pip install scikit-learn (or leave them out with --only)"
        )
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out: {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)

    results, figures, seconds, cpu = {}, {}, {}, {}
    start, cpu_start = time.perf_counter(), time.process_time()
    bar = tqdm(names, desc="initscope demo", unit="exp", file=sys.stderr)
    for name in bar:
        bar.set_postfix_str(name)
        t0, c0 = time.perf_counter(), time.process_time()
        result = experiments.run(
            name, quick=args.quick, generator=torch.Generator().manual_seed(args.seed)
        )
        seconds[name], cpu[name] = time.perf_counter() - t0, time.process_time() - c0
        results[name] = result
        figures[name] = drawing.draw(name, result, out / f"demo_{name}.png")
    meta = {
        "initscope_version": initscope.__version__,
        "torch_version": torch.__version__,
        "seed": args.seed,
        "quick": bool(args.quick),
        "seconds": seconds,
        "cpu_seconds_per_experiment": cpu,
        "total_seconds": time.perf_counter() - start,
        # CPU time of this process (one thread): about the wall time on an idle machine
        "cpu_seconds": time.process_time() - cpu_start,
        # the machine's load average over the last 5 minutes: the context of the timings
        "load_average": os.getloadavg()[1] if hasattr(os, "getloadavg") else None,
    }
    reporting.write_json(out / "results.json", results, meta)
    report = reporting.write_html(out / "report.html", results, figures, meta)
    _print_summary(results, report, meta["total_seconds"], bool(args.quick))
    return 0


def _print_summary(results: dict[str, Any], report: Path, total: float, quick: bool) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from initscope.experiments import reporting

    ok = sum(c.reproduced for r in results.values() for c in r.claims)
    n = sum(len(r.claims) for r in results.values())
    console = Console(width=max(Console().width, 140))
    console.print(f"[bold]{escape(reporting.headline(ok, n, quick))}[/bold]", highlight=False)
    table = Table(
        title="initscope demo: classic initialization results, and beyond", show_lines=True
    )
    table.add_column("experiment", no_wrap=True)
    table.add_column("claim", ratio=2)
    table.add_column("result", ratio=3)
    table.add_column("reproduced", justify="center", no_wrap=True)
    for name, result in results.items():
        for c in result.claims:
            mark = "[green]yes[/green]" if c.reproduced else "[red]no[/red]"
            table.add_row(name, escape(c.claim), escape(c.measured), mark)
    console.print(table)
    console.print(f"{ok} of {n} claims reproduced in {total:.0f} s.", highlight=False)
    console.print(f"Report: {escape(str(report))}", highlight=False, soft_wrap=True)
