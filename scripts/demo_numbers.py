"""Write the demo's numbers into docs/demo.md and README.md, from a run.

    python scripts/demo_numbers.py                      # runs the full demo (minutes) and --quick
    python scripts/demo_numbers.py --full DIR/results.json   # reuse a full `initscope demo` run

What it writes:

- ``docs/demo_results.json``: every claim of the full run (seed 0) with what it measured, the
  run's timings and machine load, and the claims of the quick run (``--quick``, seed 0).
- the blocks between ``<!-- demo-numbers:NAME -->`` and ``<!-- /demo-numbers:NAME -->`` in
  ``docs/demo.md`` (``summary`` and one per experiment) and ``README.md`` (``readme``), rendered
  from that JSON; the text around the blocks is left as it is.

``tests/test_experiments.py`` checks both ends: the blocks are exactly what :func:`fill` renders
from the committed JSON, and a fresh quick run measures what the JSON's quick part says (the
experiments are seeded and deterministic), so a change to an experiment that moves its numbers
fails the fast tests until this script is rerun. A slow test compares a fresh full run with the
JSON's full part.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "demo_results.json"
DOCS = (ROOT / "docs" / "demo.md", ROOT / "README.md")
_BLOCK = re.compile(r"(<!-- demo-numbers:([a-z_]+) -->\n)(.*?)(<!-- /demo-numbers:\2 -->)", re.S)


def _claims(experiments: dict[str, Any]) -> dict[str, Any]:
    return {
        name: {
            "title": e["title"],
            "verdict": e["verdict"],
            "claims": [{k: c[k] for k in ("claim", "measured", "reproduced")} for c in e["claims"]],
        }
        for name, e in experiments.items()
    }


def _demo(out: Path, quick: bool) -> dict[str, Any]:
    """Run ``initscope demo`` in a fresh process (as a user would) and read its results.json."""
    cmd = [sys.executable, "-m", "initscope", "demo", "--out", str(out)]
    cmd += ["--quick"] if quick else []
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return json.loads((out / "results.json").read_text())


def collect(full: dict[str, Any], quick: dict[str, Any]) -> dict[str, Any]:
    """The JSON document: the full run's claims, timings and load, and the quick run's claims."""
    return {
        "command": "initscope demo --out DIR (seed 0); quick: initscope demo --quick",
        "torch_version": full["torch_version"],
        "total_seconds": round(full["total_seconds"], 1),
        "cpu_seconds": round(full["cpu_seconds"], 1),
        "load_average": round(full["load_average"], 1),
        "seconds": {k: round(v, 1) for k, v in full["seconds"].items()},
        "cpu_seconds_per_experiment": {
            k: round(v, 1) for k, v in full["cpu_seconds_per_experiment"].items()
        },
        "quick_total_seconds": round(quick["total_seconds"], 1),
        "quick_cpu_seconds": round(quick["cpu_seconds"], 1),
        "full": _claims(full["experiments"]),
        "quick": _claims(quick["experiments"]),
    }


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _counts(doc: dict[str, Any]) -> tuple[int, int]:
    claims = [c for e in doc["full"].values() for c in e["claims"]]
    return sum(c["reproduced"] for c in claims), len(claims)


def _timing(doc: dict[str, Any]) -> str:
    return (
        f"{doc['total_seconds']:.0f} s wall, {doc['cpu_seconds']:.0f} s of CPU time (one thread; "
        f"the shared machine's load average was {doc['load_average']:.1f} on 2 cores)"
    )


def render(name: str, doc: dict[str, Any]) -> str:
    """The text of block ``name``: ``summary``, ``readme`` or an experiment's claims table."""
    ok, n = _counts(doc)
    failed = [(k, c) for k, e in doc["full"].items() for c in e["claims"] if not c["reproduced"]]
    if name == "readme":
        return (
            f"`initscope demo` (seed 0, torch {doc['torch_version']}): **{ok} of {n} claims "
            f"reproduced**, {_timing(doc)} on this 2-core machine; the {n - ok} that do not "
            "reproduce are reported with their numbers: [docs/demo.md](docs/demo.md).\n"
        )
    if name == "summary":
        lines = [
            f"From `initscope demo --out DIR` (seed 0, torch {doc['torch_version']}): "
            f"**{ok} of {n} claims reproduced**, {_timing(doc)}; `--quick`: "
            f"{doc['quick_total_seconds']:.0f} s wall, {doc['quick_cpu_seconds']:.0f} s CPU. "
            "Per experiment (s of CPU time): "
            + ", ".join(f"{k} {v:.0f}" for k, v in doc["cpu_seconds_per_experiment"].items())
            + ".",
            "",
            f"Not reproduced ({n - ok}), reported rather than hidden:",
            "",
        ]
        lines += [f"- `{k}`: {_cell(c['claim'])}" for k, c in failed]
        return "\n".join(lines) + "\n"
    entry = doc["full"][name]
    rows = ["| claim | measured | reproduced |", "| --- | --- | --- |"]
    rows += [
        f"| {_cell(c['claim'])} | {_cell(c['measured'])} | "
        f"{'yes' if c['reproduced'] else '**no**'} |"
        for c in entry["claims"]
    ]
    return f"{entry['verdict']}\n\n" + "\n".join(rows) + "\n"


def fill(text: str, doc: dict[str, Any]) -> str:
    """``text`` with every demo-numbers block rendered from ``doc``."""
    return _BLOCK.sub(lambda m: m.group(1) + render(m.group(2), doc) + m.group(4), text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", type=Path, help="results.json of a full `initscope demo` run")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        if args.full:
            full = json.loads(args.full.read_text())
        else:
            full = _demo(Path(tmp) / "full", quick=False)
        quick = _demo(Path(tmp) / "quick", quick=True)
    doc = collect(full, quick)
    RESULTS.write_text(json.dumps(doc, indent=1) + "\n")
    for path in DOCS:
        path.write_text(fill(path.read_text(), doc))
    ok, n = _counts(doc)
    print(f"{ok} of {n} claims reproduced; wrote {RESULTS} and the blocks in "
          + ", ".join(str(p.relative_to(ROOT)) for p in DOCS))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
