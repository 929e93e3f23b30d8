"""``initscope diagnose``: one forward and backward pass that shows, layer by layer, what the
signal does.

initscope diagnose path/to/file.py:factory --input-shape 64,784 [--init NAME] [--json]
                   [--html out.html] [--plot out.png] [--seed N] [--eval]
"""

from __future__ import annotations

import argparse
import inspect
import sys
from typing import Any

import torch
import torch.nn as nn

from initscope.cli._common import CLIError, build_model, check_output, parse_shape, user_code

# The layers ``--init SCHEME`` draws, in initscope.graph's taxonomy.
_INIT_KINDS = frozenset({"linear", "conv", "conv_transpose"})


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "diagnose",
        help="one forward and backward pass: per-layer signal, gradients, dead/saturated/"
        "symmetric units",
        description=(
            "Build the model from a factory, run one synthetic N(0, 1) batch forward and backward "
            "(integer tokens when the model starts with an Embedding) and print a per-layer table "
            "with a verdict: healthy, exploding, vanishing, dead, saturated or symmetric."
        ),
    )
    parser.add_argument(
        "model", help="path/to/file.py:factory or module.path:factory (called with no arguments)"
    )
    parser.add_argument(
        "--input-shape",
        required=True,
        metavar="SHAPE",
        help="batch shape, e.g. 64,784 (batch first as the model expects it)",
    )
    parser.add_argument(
        "--init",
        metavar="NAME",
        help="initialize first: a policy preset (when initscope.policy is installed) or an "
        "initscope.init scheme applied to the weight of every Linear/Conv*/ConvTranspose* "
        "(biases set to zero), e.g. kaiming_normal",
    )
    parser.add_argument(
        "--init-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keyword argument for the --init scheme, e.g. val=0.5 for constant (repeatable)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of torch's RNG before the factory runs, and of the input, "
        "g and --init draws (default 0)",
    )
    parser.add_argument(
        "--eval",
        action="store_true",
        help="run the pass in eval mode (default: the mode the factory returns)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the report as JSON instead of the table"
    )
    parser.add_argument("--html", metavar="PATH", help="write a self-contained HTML report")
    parser.add_argument(
        "--plot", metavar="PATH", help="write the std-vs-depth figure (PNG, PDF, SVG)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from initscope.diagnostics import diagnose, synthetic_batch

    init_args = _parse_kwargs(args.init_arg)
    if init_args and not args.init:
        raise CLIError("--init-arg: given without --init")
    shape = parse_shape(args.input_shape)
    # Outputs are checked before the work, so that a bad path does not cost the whole pass.
    html = check_output("--html", args.html) if args.html else None
    plot = check_output("--plot", args.plot, _plot_formats()) if args.plot else None
    torch.manual_seed(args.seed)  # the factory's default-initialized layers draw from torch's RNG
    model = build_model(args.model)
    generator = torch.Generator().manual_seed(args.seed)
    if args.eval:
        model.eval()
    with user_code(f"the model, on a synthetic batch of shape {shape},"):
        inputs = synthetic_batch(model, shape, generator=generator)
        if args.init:
            _initialize(model, args.init, init_args, inputs, generator)
        report = diagnose(model, inputs, generator=generator)
    report.meta["input"] = f"synthetic {tuple(inputs.shape)}"
    if args.json:
        print(report.to_json())
    else:
        _print_table(report)
    try:
        if html is not None:
            print(f"wrote {report.to_html(html)}", file=sys.stderr)
        if plot is not None:
            report.plot(plot)
            print(f"wrote {plot}", file=sys.stderr)
    except OSError as exc:
        raise CLIError(f"cannot write {exc.filename}: {exc.strerror}") from None
    return 0


def _plot_formats() -> tuple[str, ...]:
    """The file extensions matplotlib can save to (png, pdf, svg, ...)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    return tuple(sorted(FigureCanvasAgg.get_supported_filetypes()))


def _print_table(report: Any) -> None:
    from rich.console import Console

    console = Console()
    if console.is_terminal:
        console.print(report)
    else:
        print(report)


def _parse_kwargs(items: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` items as texts; :func:`_scheme_kwargs` converts them for the scheme."""
    kwargs: dict[str, str] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.isidentifier():
            raise CLIError(f"--init-arg: expected KEY=VALUE, got {item!r}")
        kwargs[key] = text
    return kwargs


# Arguments of a scheme that a command line cannot give (objects, not text).
_NOT_FROM_CLI = ("generator", "fans")
# Annotations (as strings: the schemes use postponed evaluation) that take numbers.
_NUMBERS: dict[str, type] = {"float": float, "int": int}


def _scheme_kwargs(name: str, scheme: Any, texts: dict[str, str]) -> dict[str, Any]:
    """Check ``--init-arg`` against the scheme's signature and convert each value: a number
    where the scheme takes a number, else an int, a float or the text, as written."""
    params = list(inspect.signature(scheme).parameters.values())[1:]  # after the tensor
    settable = {
        p.name: p
        for p in params
        if p.name not in _NOT_FROM_CLI and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }
    kwargs: dict[str, Any] = {}
    for key, text in texts.items():
        if key not in settable:
            takes = ", ".join(settable) or "no arguments"
            raise CLIError(f"--init-arg {key}: the scheme {name!r} takes {takes}")
        annotation = settable[key].annotation
        cast = _NUMBERS.get(annotation if isinstance(annotation, str) else "")
        if cast is not None:
            try:
                kwargs[key] = cast(text)
            except ValueError:
                kind = "an integer" if cast is int else "a number"
                raise CLIError(f"--init-arg {key}={text}: {name}'s {key} is {kind}") from None
        else:
            kwargs[key] = _parse_value(text)
    missing = [k for k, p in settable.items() if p.default is p.empty and k not in kwargs]
    if missing:
        needed = " ".join(f"--init-arg {k}=VALUE" for k in missing)
        raise CLIError(f"--init {name}: needs {needed}")
    return kwargs


def _parse_value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _policy_presets() -> tuple[str, ...]:
    try:
        from initscope.policy import PRESETS
    except ImportError:
        return ()
    return tuple(PRESETS)


def _initialize(
    model: nn.Module,
    name: str,
    init_args: dict[str, str],
    inputs: torch.Tensor,
    generator: torch.Generator,
) -> None:
    presets = _policy_presets()
    if name in presets:
        if init_args:
            raise CLIError(f"--init-arg: the policy preset {name!r} takes no arguments")
        import initscope

        initscope.initialize(model, preset=name, example_input=inputs, generator=generator)
        return
    from initscope.init import get_scheme, zeros_

    try:
        scheme = get_scheme(name)
    except ValueError as exc:
        extra = f"; policy presets: {', '.join(presets)}" if presets else ""
        raise CLIError(f"--init: {exc}{extra}") from None
    kwargs = _scheme_kwargs(name, scheme, init_args)
    if "generator" in inspect.signature(scheme).parameters:
        kwargs["generator"] = generator
    targets = _init_targets(model)
    if not targets:
        raise CLIError(f"--init {name}: the model has no Linear, Conv* or ConvTranspose* layer")
    for weight, bias in targets:
        scheme(weight, **kwargs)
        if bias is not None:
            zeros_(bias)


def _init_targets(model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """``(weight, bias)`` of every linear, conv and conv-transpose layer that has a weight."""
    from initscope.graph import layer_kind

    targets = []
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if isinstance(weight, torch.Tensor) and layer_kind(module) in _INIT_KINDS:
            bias = getattr(module, "bias", None)
            targets.append((weight, bias if isinstance(bias, torch.Tensor) else None))
    return targets
