"""The presets side by side: signal propagation at initialization, measured with ``diagnose``.

For each model and preset ("torch", "guide", "auto") the model is initialized with a fixed
generator and ``initscope.diagnose`` runs one forward and backward pass on a synthetic N(0, 1)
batch of 128. Printed: ``forward_log2`` = log2(std of the last weight layer's pre-activation /
std of the first's) and ``backward_log2`` = log2(gradient std at the first weight layer / at the
last), and the verdict. ``|log2| <= 1`` means the signal kept its scale within a factor of 2.
For the MLPs the theory's prediction (``initscope.theory.depth_profile`` for the hidden stack plus
the output layer's step) is printed next to the "auto" figures.

    python scripts/policy_table.py            # Markdown table, as in docs/policy.md
    python scripts/policy_table.py --seeds 10 # spread over seeds for the "auto" MLP rows
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
import warnings
from pathlib import Path

import torch

import initscope
from initscope import theory

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location(
    "initialize_models", ROOT / "examples" / "initialize_models.py"
)
models = importlib.util.module_from_spec(_spec)
sys.modules["initialize_models"] = models
_spec.loader.exec_module(models)

BATCH = 128
MLP_ACTS = ("relu", "leaky_relu", "tanh", "gelu", "silu", "selu")


def cases() -> list[tuple[str, object, tuple[int, ...]]]:
    """(name, factory, input shape) of every model in the table."""
    out = [(f"MLP 50x256 {act}", lambda a=act: models.mlp(a), (BATCH, 256)) for act in MLP_ACTS]
    out.append(("ResNet-style CNN, 20 blocks, no norm", models.resnet_cnn, (BATCH, 3, 8, 8)))
    out.append(("TransformerEncoder 12 x d128", models.transformer_encoder, (BATCH, 16, 128)))
    out.append(("LSTM, 4 stacked layers", models.lstm_model, (BATCH, 16, 64)))
    return out


def measure(factory, shape: tuple[int, ...], preset: str, seed: int = 0) -> dict:
    """Initialize a fresh model with ``preset`` and diagnose it on an N(0, 1) batch."""
    torch.manual_seed(seed)
    model = factory()
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g)
    plan = None
    if preset != "torch":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            plan = initscope.initialize(model, preset, example_input=x, generator=g)
    report = initscope.diagnose(model, x, generator=g)
    rec = [s for s in report.layers if s.kind == "recurrent"]
    if rec:  # LSTM rows are "recurrent", not "weight": compare the first and last LSTM
        fwd = math.log2(rec[-1].out_std / rec[0].out_std)
        bwd = math.log2(rec[0].grad_out_std / rec[-1].grad_out_std)
    else:
        fwd, bwd = report.forward_log2, report.backward_log2
    return {"forward": fwd, "backward": bwd, "verdict": report.verdict, "plan": plan}


def mlp_prediction(act: str, plan: initscope.Plan, depth: int = 50) -> tuple[float, float]:
    """theory.depth_profile for the hidden stack (layers 1..depth-1, their planned variances)
    plus the output layer's step, from the plan's own numbers."""
    width = 256
    first, hidden, last = plan["0.weight"], plan["2.weight"], plan[f"{2 * (depth - 1)}.weight"]
    w = hidden.std**2 * width
    b = plan["2.bias"].std ** 2
    q0 = first.std**2 * width + plan["0.bias"].std ** 2  # Var(x) = 1
    prof = theory.depth_profile(act, w, b, depth - 1, q0)
    q_last = prof.q[-1]
    w_out = last.std**2 * width
    q_out = theory.variance_map(act, q_last, w_out, 0.0)
    fwd = prof.forward_log2 + 0.5 * math.log2(q_out / q_last)
    bwd = prof.backward_log2 + 0.5 * math.log2(w_out * theory.moments(act, q_last).deriv_second)
    return fwd, bwd


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=1, help="seeds per 'auto' MLP row")
    args = parser.parse_args(argv)
    print("| model | preset | forward log2 | backward log2 | verdict | theory (fwd / bwd) |")
    print("|---|---|---:|---:|---|---|")
    for name, factory, shape in cases():
        for preset in ("torch", "guide", "auto"):
            r = measure(factory, shape, preset)
            theory_col = ""
            if name.startswith("MLP") and r["plan"] is not None:
                fwd, bwd = mlp_prediction(name.split()[-1], r["plan"])
                theory_col = f"{fwd:+.2f} / {bwd:+.2f}"
            print(
                f"| {name} | {preset} | {r['forward']:+.2f} | {r['backward']:+.2f} | "
                f"{r['verdict']} | {theory_col} |"
            )
    if args.seeds > 1:
        print(
            f"\n'auto' MLPs over {args.seeds} seeds: mean [min, max] of the log2 figures, and "
            "how many seeds keep both within 1 bit"
        )
        for act in MLP_ACTS:
            rs = [
                measure(lambda a=act: models.mlp(a), (BATCH, 256), "auto", s)
                for s in range(args.seeds)
            ]
            fwd = torch.tensor([r["forward"] for r in rs])
            bwd = torch.tensor([r["backward"] for r in rs])
            ok = int(((fwd.abs() <= 1) & (bwd.abs() <= 1)).sum())
            print(
                f"  {act:10s} forward {fwd.mean():+.2f} [{fwd.min():+.2f}, {fwd.max():+.2f}]  "
                f"backward {bwd.mean():+.2f} [{bwd.min():+.2f}, {bwd.max():+.2f}]  "
                f"within 1 bit: {ok}/{args.seeds}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
