"""``initscope init``: the initialization plan for a model, every parameter explained.

initscope init path/to/file.py:factory [--preset auto] [--input-shape 64,784] [--json]
               [--save-plan plan.json] [--seed N] [--zero-init-residual] [--rule GLOB=SCHEME]

Nothing is written to the model file: the command prints (and optionally saves) the plan that
``initscope.initialize`` would apply. ``--input-shape`` is needed for models that ``torch.fx``
cannot trace (``nn.TransformerEncoder``, data-dependent control flow): one synthetic batch is run
through the model instead, and it is the batch ``--preset lsuv`` calibrates on.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import torch

from initscope.cli._common import (
    CLIError,
    build_model,
    check_batch,
    check_output,
    parse_shape,
    user_code,
)


def register(subparsers: Any) -> None:
    from initscope.policy import PRESETS

    parser = subparsers.add_parser(
        "init",
        help="print the initialization plan for a model: scheme, std, formula and why, per "
        "parameter",
        description=(
            "Build the model from a factory, inspect it (activations, normalizations, residual "
            "branches, attention, outputs) and print the plan of a policy preset: for every "
            "parameter its fans, scheme, standard deviation, formula and the reason."
        ),
    )
    parser.add_argument(
        "model", help="path/to/file.py:factory or module.path:factory (called with no arguments)"
    )
    parser.add_argument(
        "--preset", default="auto", choices=PRESETS, help="policy preset (default auto)"
    )
    parser.add_argument(
        "--input-shape",
        metavar="SHAPE",
        help="shape of a synthetic batch, e.g. 64,784: needed when torch.fx cannot trace the "
        "model, and for --preset lsuv (integer tokens when the model starts with an "
        "Embedding)",
    )
    parser.add_argument(
        "--zero-init-residual", action="store_true", help="start every residual branch at zero"
    )
    parser.add_argument(
        "--rule",
        action="append",
        default=[],
        metavar="GLOB=SCHEME",
        help="custom rule before the preset: a glob on the module or parameter path and a "
        "scheme name, e.g. '*.head=zeros' (repeatable)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of torch's RNG before the factory runs and of the synthetic batch (default 0)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the plan as JSON instead of the table"
    )
    parser.add_argument(
        "--save-plan",
        metavar="PATH",
        help="write the plan as JSON (initscope.Plan.from_dict reads it)",
    )
    parser.set_defaults(func=run)


def _rules(items: list[str]) -> list[tuple[str, str]]:
    rules = []
    for item in items:
        glob, sep, scheme = item.rpartition("=")
        if not sep or not glob or not scheme:
            raise CLIError(f"--rule: expected GLOB=SCHEME, e.g. '*.head=zeros', got {item!r}")
        rules.append((glob, scheme))
    return rules


def run(args: argparse.Namespace) -> int:
    from initscope.policy import plan

    rules = _rules(args.rule)
    shape = parse_shape(args.input_shape) if args.input_shape is not None else None
    if shape is None and args.preset == "lsuv":
        raise CLIError("--preset lsuv: give --input-shape, the batch LSUV calibrates on")
    save = check_output("--save-plan", args.save_plan) if args.save_plan else None
    torch.manual_seed(args.seed)  # layers the factory builds draw from torch's default RNG
    model = build_model(args.model)
    example = None
    if shape is not None:
        from initscope.diagnostics import synthetic_batch

        generator = torch.Generator().manual_seed(args.seed)
        with user_code(f"the model, on a synthetic batch of shape {shape},"):
            example = synthetic_batch(model, shape, generator=generator)
        # The plan may not run the batch (torch.fx traces without it): check that it fits now.
        check_batch(model, example, f"--input-shape {args.input_shape}")
    try:
        with user_code("the model"):
            p = plan(
                model,
                args.preset,
                example_input=example,
                rules=rules,
                zero_init_residual=args.zero_init_residual,
            )
    except ValueError as exc:
        if example is None and "example_input" in str(exc):
            raise CLIError(
                f"{exc}\nhint: pass --input-shape so that a synthetic batch can be "
                "recorded through the model"
            ) from None
        raise
    if save is not None:
        try:
            p.to_json(save)
        except OSError as exc:
            raise CLIError(f"--save-plan: cannot write {save}: {exc.strerror}") from None
        print(f"wrote {save}", file=sys.stderr)
    if args.json:
        print(p.to_json())
        return 0
    from rich.console import Console

    console = Console()
    if console.is_terminal:
        console.print(p.table())
    else:
        print(p)
    return 0
