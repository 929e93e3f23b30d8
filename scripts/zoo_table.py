"""The real-model zoo: each model's own initialization against ``auto``, measured.

For every model of ``tests/zoo/zoo_models.py`` (small configurations of Hugging Face,
torchvision and timm architectures, random weights, nothing downloaded), built twice with the
same seed: once as its library initializes it, once re-initialized by ``initscope.initialize``
(preset ``auto``). ``initscope.diagnose`` runs one forward and backward pass on the model's
example batch; printed per model: forward and backward log2 over the body and the verdict for
each, the time to plan and to initialize (median of 3), and how many parameters ``auto`` leaves
untouched. Models whose library cannot be imported are listed as skipped, with the reason.

    python scripts/zoo_table.py             # Markdown table, as in docs/policy.md
    python scripts/zoo_table.py hf_gpt2     # some models only
    python scripts/zoo_table.py --recipes   # per weight: the model's own std against the plans

``--recipes`` prints, per model and per weight matrix (parameters of 1000 values or more), the
std the library's own initialization drew (measured on the freshly built model) next to the std
``auto`` and ``gpt2`` plan for it.
"""

from __future__ import annotations

import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch

import initscope

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "zoo"))
from zoo_models import ZOO, unavailable  # noqa: E402


def _diagnosed(model: torch.nn.Module, x: Any) -> str:
    try:
        r = initscope.diagnose(model, x, generator=torch.Generator().manual_seed(3))
    except Exception as exc:  # shown in the table: the diagnosis itself failed
        return f"error ({type(exc).__name__}) | |"
    return f"{r.forward_log2:+.2f} | {r.backward_log2:+.2f} | {r.verdict}"


def _timed(fn: Any, repeat: int = 3) -> tuple[Any, float]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return out, statistics.median(times)


def recipes(names: list[str]) -> None:
    """The model's own (published) init, measured, against the planned stds."""
    print("| model | parameter | shape | own std | auto std | gpt2 std |")
    print("|---|---|---|---|---|---|")
    for z in ZOO:
        if (names and z.name not in names) or unavailable(z.library) is not None:
            continue
        torch.manual_seed(0)
        model, x = z.build()
        auto = initscope.plan(model, example_input=x)
        gpt2 = initscope.plan(model, "gpt2", example_input=x)
        for e in auto:
            w = model.get_parameter(e.path).detach()
            if w.dim() < 2 or w.numel() < 1000 or e.std is None:
                continue
            own = float(w.double().std())
            g = gpt2[e.path].std
            shape = "x".join(map(str, e.shape))
            print(f"| {z.name} | {e.path} | {shape} | {own:.4g} | {e.std:.4g} | {g:.4g} |")


def main(argv: list[str]) -> None:
    warnings.simplefilter("ignore")
    if "--recipes" in argv:
        recipes([a for a in argv if a != "--recipes"])
        return
    print(
        "| model | own fwd | own bwd | own verdict | auto fwd | auto bwd | auto verdict "
        "| plan s | initialize s | untouched |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for z in ZOO:
        if argv and z.name not in argv:
            continue
        why = unavailable(z.library)
        if why is not None:
            print(f"| {z.name} | skipped: {why} |||||||||")
            continue
        torch.manual_seed(0)
        own, x = z.build()
        torch.manual_seed(0)
        model, _ = z.build()
        plan, t_plan = _timed(lambda m=model, x=x: initscope.plan(m, example_input=x))
        _, t_init = _timed(
            lambda m=model, x=x: initscope.initialize(
                m, example_input=x, generator=torch.Generator().manual_seed(0)
            )
        )
        print(
            f"| {z.name} | {_diagnosed(own, x)} | {_diagnosed(model, x)} | {t_plan:.2f} | "
            f"{t_init:.2f} | {len(plan.untouched)} |"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
