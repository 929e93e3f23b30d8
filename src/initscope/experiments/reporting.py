"""The demo's outputs: ``results.json`` and a self-contained ``report.html`` (figures inline)."""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path
from typing import Any

from initscope.experiments import get
from initscope.experiments._common import Result

_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1500px; margin: 2em auto; padding: 0 1em;
       color: #222; }
table { border-collapse: collapse; margin: 0.8em 0; width: 100%; }
th, td { border: 1px solid #ccc; padding: 0.35em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.yes { color: #176b2c; font-weight: 600; } td.no { color: #a4161a; font-weight: 600; }
img { max-width: 100%; border: 1px solid #eee; }
p.summary { font-size: 1.05em; } .meta { color: #666; font-size: 0.9em; }
ul.failed li { margin: 0.3em 0; } dt { font-weight: 600; } dd { margin: 0 0 0.4em 1.5em; }
"""


def summary(module_doc: str | None) -> str:
    """What an experiment shows: the paragraph after its module docstring's title line, on one
    line, without reST literals."""
    paragraphs = (module_doc or "").strip().split("\n\n")
    text = paragraphs[1] if len(paragraphs) > 1 else paragraphs[0]
    return re.sub(r"``([^`]*)``", r"\1", " ".join(text.split()))


#: Words a newcomer meets in the report, with their meaning.
GLOSSARY: tuple[tuple[str, str], ...] = (
    ("std", "standard deviation: the typical size of the numbers in a layer's output or gradient"),
    ("bits", "a log2 factor: losing 10 bits of std means the std shrank by 2^10, about 1000"),
    ("forward / backward", "the signal going from input to output, and the gradient going back"),
    ("Xavier", "Glorot & Bengio 2010: weight variance 2 / (fan_in + fan_out)"),
    ("He", "He et al. 2015: weight variance 2 / fan_in, for ReLU"),
    ("fan_in / fan_out", "the number of inputs / outputs of a layer"),
    (
        "critical point",
        "the weight and bias variances at which a deep net's signal neither grows nor shrinks "
        "with depth (Poole et al. 2016; Schoenholz et al. 2017); initscope's preset 'auto' uses it",
    ),
    (
        "LSUV",
        "Mishkin & Matas 2016: rescale each layer on a batch of data until its output std is 1",
    ),
    ("BN", "batch normalization (Ioffe & Szegedy 2015)"),
    ("C / K", "a call option's price divided by its strike price (Black-Scholes model)"),
)


def headline(ok: int, n: int, quick: bool = False) -> str:
    """How many claims reproduced, and that the others are reported, not hidden."""
    text = (
        f"All {n} claims reproduced."
        if ok == n
        else f"{ok} of {n} claims reproduced. {n - ok} claims (some of them classic) do not "
        "reproduce as stated: they are reported with the numbers we measured, not hidden."
    )
    if quick:
        text += (
            " This is a quick run (small sizes, a fraction of the training): the claims about "
            "training are judged on too little of it; run without --quick for the reference."
        )
    return text


def verdict(result: Result) -> str:
    """One sentence: how many of the experiment's claims reproduced."""
    ok = sum(c.reproduced for c in result.claims)
    n = len(result.claims)
    if ok == n:
        return f"Reproduced: all {n} claims hold."
    if ok == 0:
        return f"Not reproduced: none of the {n} claims holds."
    failed = "; ".join(c.claim.rstrip(".") for c in result.claims if not c.reproduced)
    return f"Partly reproduced: {ok} of {n} claims hold. Not reproduced: {failed}."


def results_json(results: dict[str, Result], meta: dict[str, Any]) -> dict[str, Any]:
    """The JSON document: run metadata plus, per experiment, its title, verdict and data."""
    experiments = {}
    for name, result in results.items():
        module = get(name)
        data = result.to_dict()
        clash = {"title", "verdict"} & set(data)
        if clash:  # a result field would hide the report's own keys
            raise ValueError(f"{name}: result fields {sorted(clash)} clash with the report's keys")
        experiments[name] = {"title": module.TITLE, "verdict": verdict(result), **data}
    return {**meta, "experiments": experiments}


def write_json(path: Path, results: dict[str, Result], meta: dict[str, Any]) -> Path:
    path.write_text(json.dumps(results_json(results, meta), indent=1, allow_nan=False) + "\n")
    return path


def _rows(result: Result, name: str | None = None) -> str:
    rows = []
    for c in result.claims:
        first = f"<td>{html.escape(name)}</td>" if name else ""
        cls, word = ("yes", "yes") if c.reproduced else ("no", "no")
        rows.append(
            f"<tr>{first}<td>{html.escape(c.claim)}</td><td>{html.escape(c.measured)}</td>"
            f'<td class="{cls}">{word}</td></tr>'
        )
    return "".join(rows)


def _table(rows: str, with_name: bool) -> str:
    head = "<th>Experiment</th>" if with_name else ""
    return f"<table><tr>{head}<th>Claim</th><th>Measured</th><th>Reproduced</th></tr>{rows}</table>"


def write_html(
    path: Path, results: dict[str, Result], figures: dict[str, Path], meta: dict[str, Any]
) -> Path:
    """``report.html``: a summary table, then per experiment what it shows, its figure (inline
    base64 PNG), its verdict and the claims with the measured numbers."""
    total = sum(len(r.claims) for r in results.values())
    ok = sum(c.reproduced for r in results.values() for c in r.claims)
    mode = "quick" if meta.get("quick") else "full"
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>initscope demo</title><style>{_CSS}</style></head><body>",
        "<h1>initscope demo: the classic weight-initialization results, and beyond</h1>",
        "<p>Each experiment states a claim about weight initialization from the classic papers "
        "and textbooks, or about what initscope adds to them, measures it here, and says whether "
        "it reproduced.</p>",
        f"<p class='meta'>initscope {html.escape(str(meta.get('initscope_version')))}, "
        f"torch {html.escape(str(meta.get('torch_version')))}, seed {meta.get('seed')}, "
        f"{mode} run, {meta.get('total_seconds', 0.0):.0f} s.</p>",
        f"<p class='summary'><b>{html.escape(headline(ok, total, bool(meta.get('quick'))))}"
        "</b></p>",
    ]
    failed = [(name, c) for name, r in results.items() for c in r.claims if not c.reproduced]
    if failed:
        parts.append("<p>Not reproduced:</p><ul class='failed'>")
        parts += [
            f"<li><a href='#{name}'>{html.escape(name)}</a>: {html.escape(c.claim)} "
            f"<i>Measured: {html.escape(c.measured)}</i></li>"
            for name, c in failed
        ]
        parts.append("</ul>")
    parts.append("<h2>Summary</h2>")
    parts.append(_table("".join(_rows(r, name) for name, r in results.items()), True))
    for name, result in results.items():
        module = get(name)
        png = base64.b64encode(figures[name].read_bytes()).decode("ascii")
        seconds = meta.get("seconds", {}).get(name)
        took = f" ({seconds:.1f} s)" if seconds is not None else ""
        parts += [
            f"<h2 id='{name}'>{html.escape(module.TITLE)} <small>[{name}]{took}</small></h2>",
            f"<p>{html.escape(summary(module.__doc__))}</p>",
            f"<p><b>{html.escape(verdict(result))}</b></p>",
            f"<img alt='{name}' src='data:image/png;base64,{png}'>",
            _table(_rows(result), False),
        ]
    parts.append("<h2 id='glossary'>Words used</h2><dl>")
    parts += [f"<dt>{html.escape(w)}</dt><dd>{html.escape(d)}</dd>" for w, d in GLOSSARY]
    parts.append("</dl>")
    parts.append("</body></html>\n")
    path.write_text("\n".join(parts))
    return path
