"""The real-model zoo: each model's own initialization against ``auto``, measured.

For every model of ``tests/zoo/zoo_models.py`` (small configurations of Hugging Face,
torchvision and timm architectures, random weights, nothing downloaded), built twice after
``torch.manual_seed(0)``: once as its library initializes it, once re-initialized by
``initscope.initialize`` (preset ``auto``). ``initscope.diagnose`` runs one forward and
backward pass on the model's example batch; printed per model: the two numbers the depth
verdicts read over the body (``forward_log2``, and the fitted backward trend
``backward_slope * (n - 1)``), the verdict for each init, the time to plan and to initialize
(median of 3), and how many parameters ``auto`` leaves untouched. Models whose library
cannot be imported are listed as skipped, with the reason.

    python scripts/zoo_table.py             # Markdown table, as in docs/zoo.md
    python scripts/zoo_table.py hf_gpt2     # some models only
    python scripts/zoo_table.py --recipes   # per group of like weights: own std against the plans
    python scripts/zoo_table.py --bn        # BatchNorm gradient growth at 3 batch/image sizes
    python scripts/zoo_table.py --write     # the tables into README.md and docs/zoo.md

``--recipes`` prints, per model and per group of like weight matrices (the path with its block
indices replaced by ``#``; parameters of 1000 values or more), the std the library's own
initialization drew (measured on the freshly built model; the median over the group) next to
the std ``auto`` and ``gpt2`` plan for it. ``--write`` replaces the text between the markers
``<!-- zoo-table:start -->`` / ``<!-- zoo-table:end -->`` (README.md, docs/zoo.md) and
``<!-- zoo-recipes:start -->`` / ``<!-- zoo-recipes:end -->`` and ``zoo-bn`` (docs/zoo.md);
``tests/zoo/test_zoo_docs.py`` fails when the written numbers drift from a new run.
"""

from __future__ import annotations

import re
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch

import initscope

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "zoo"))
from zoo_models import ZOO, ZooModel, unavailable  # noqa: E402

HEADER = (
    "| model | own fwd | own bwd | own verdict | auto fwd | auto bwd | auto verdict "
    "| plan s | initialize s | untouched |\n|---|---|---|---|---|---|---|---|---|---|"
)
RECIPES_HEADER = (
    "| model | weights (like layers) | n | own std | auto std | gpt2 std |\n"
    "|---|---|---|---|---|---|"
)


def trend(r: initscope.Report) -> float:
    """The fitted backward change over the body, as the verdict rule reads it."""
    return r.backward_slope * (len(r.body_layers()) - 1)


def diagnosed(model: torch.nn.Module, x: Any) -> initscope.Report:
    return initscope.diagnose(model, x, generator=torch.Generator().manual_seed(3))


def _timed(fn: Any, repeat: int = 3) -> tuple[Any, float]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return out, statistics.median(times)


def measure(z: ZooModel) -> dict[str, Any]:
    """One row: own and auto reports' forward log2, backward trend, verdict; times; untouched."""
    torch.manual_seed(0)
    own, x = z.build()
    torch.manual_seed(0)
    model, _ = z.build()
    plan, t_plan = _timed(lambda: initscope.plan(model, example_input=x))
    _, t_init = _timed(
        lambda: initscope.initialize(
            model, example_input=x, generator=torch.Generator().manual_seed(0)
        )
    )
    mine, theirs = diagnosed(model, x), diagnosed(own, x)
    return {
        "model": z.name,
        "own": (theirs.forward_log2, trend(theirs), theirs.verdict),
        "auto": (mine.forward_log2, trend(mine), mine.verdict),
        "times": (t_plan, t_init),
        "untouched": len(plan.untouched),
    }


def row_text(row: dict[str, Any]) -> str:
    (of, ob, ov), (af, ab, av) = row["own"], row["auto"]
    t_plan, t_init = row["times"]
    return (
        f"| {row['model']} | {of:+.2f} | {ob:+.2f} | {ov} | {af:+.2f} | {ab:+.2f} | {av} | "
        f"{t_plan:.2f} | {t_init:.2f} | {row['untouched']} |"
    )


def parse_table(text: str) -> dict[str, dict[str, Any]]:
    """The rows of a written table, by model (the inverse of :func:`row_text`)."""
    out = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 10 or cells[0] in ("model", "---"):
            continue
        num = [float(c) for c in (cells[1], cells[2], cells[4], cells[5])]
        out[cells[0]] = {
            "model": cells[0],
            "own": (num[0], num[1], cells[3]),
            "auto": (num[2], num[3], cells[6]),
            "untouched": int(cells[9]),
        }
    return out


def table(names: list[str]) -> str:
    lines = [HEADER]
    for z in ZOO:
        if names and z.name not in names:
            continue
        why = unavailable(z.library)
        lines.append(f"| {z.name} | skipped: {why} |||||||||" if why else row_text(measure(z)))
    return "\n".join(lines)


def _like(path: str) -> str:
    return ".".join("#" if p.isdigit() else p for p in path.split("."))


def recipes(names: list[str]) -> str:
    """The model's own (published) init, measured, against the planned stds, per group."""
    lines = [RECIPES_HEADER]
    for z in ZOO:
        if (names and z.name not in names) or unavailable(z.library) is not None:
            continue
        torch.manual_seed(0)
        model, x = z.build()
        auto = initscope.plan(model, example_input=x)
        gpt2 = initscope.plan(model, "gpt2", example_input=x)
        groups: dict[str, list[tuple[float, float, float]]] = {}
        for e in auto:
            w = model.get_parameter(e.path).detach()
            if w.dim() < 2 or w.numel() < 1000 or e.std is None:
                continue
            own = float(w.double().std())
            groups.setdefault(_like(e.path), []).append((own, e.std, gpt2[e.path].std))
        for key, vals in groups.items():
            own, a, g = (statistics.median(v[i] for v in vals) for i in range(3))
            lines.append(f"| {z.name} | {key} | {len(vals)} | {own:.4g} | {a:.4g} | {g:.4g} |")
    return "\n".join(lines)


BN_MODELS = ("tv_efficientnet_b0", "tv_mobilenet_v3_small")
BN_BATCHES = ((8, 64), (32, 64), (8, 128))


def bn_growth() -> str:
    """The backward trend of the BatchNorm networks that stay ``exploding``, own init and auto,
    at three batch sizes and resolutions: a property of the network, not of the measure."""
    lines = [
        "| model | batch | image | own bwd | auto bwd |",
        "|---|---|---|---|---|",
    ]
    for z in ZOO:
        if z.name not in BN_MODELS or unavailable(z.library) is not None:
            continue
        for batch, size in BN_BATCHES:
            x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(2))
            torch.manual_seed(0)
            own, _ = z.build()
            torch.manual_seed(0)
            model, _ = z.build()
            initscope.initialize(model, example_input=x, generator=torch.Generator().manual_seed(0))
            t_own, t_auto = trend(diagnosed(own, x)), trend(diagnosed(model, x))
            lines.append(f"| {z.name} | {batch} | {size} | {t_own:+.2f} | {t_auto:+.2f} |")
    return "\n".join(lines)


def write_between(path: Path, marker: str, body: str) -> None:
    """Replace the text between ``<!-- marker:start -->`` and ``<!-- marker:end -->``."""
    text = path.read_text(encoding="utf-8")
    pattern = re.compile(rf"(<!-- {marker}:start -->\n).*?(<!-- {marker}:end -->)", flags=re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"{path}: no {marker} markers")
    path.write_text(
        pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(2), text), encoding="utf-8"
    )


def main(argv: list[str]) -> None:
    warnings.simplefilter("ignore")
    names = [a for a in argv if not a.startswith("--")]
    if "--write" in argv:
        out = table(names)
        for path in (ROOT / "README.md", ROOT / "docs" / "zoo.md"):
            write_between(path, "zoo-table", out)
        write_between(ROOT / "docs" / "zoo.md", "zoo-recipes", recipes(names))
        write_between(ROOT / "docs" / "zoo.md", "zoo-bn", bn_growth())
        print(out)
        return
    if "--bn" in argv:
        print(bn_growth())
        return
    print(recipes(names) if "--recipes" in argv else table(names))


if __name__ == "__main__":
    main(sys.argv[1:])
