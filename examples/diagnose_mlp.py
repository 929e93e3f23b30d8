"""Diagnose a 30-layer ReLU MLP: nn.Linear's default init against He (Kaiming) init.

    python examples/diagnose_mlp.py
    python examples/diagnose_mlp.py --figure docs/figures/diagnose_relu_default_vs_he.png \\
        --html mlp.html

The factory ``make_mlp`` also serves the command line:

    initscope diagnose examples/diagnose_mlp.py:make_mlp --input-shape 128,256
    initscope diagnose examples/diagnose_mlp.py:make_mlp --input-shape 128,256 --init kaiming_normal
"""

from __future__ import annotations

import argparse

import torch
import torch.nn as nn

from initscope import compare, diagnose


def make_mlp(depth: int = 30, width: int = 256) -> nn.Sequential:
    """``depth`` x (Linear(width, width), ReLU) with PyTorch's default initialization."""
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers)


def he_init_(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """He et al. (2015): Var(W) = 2 / fan_in on every Linear, biases zero."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu", generator=generator)
            nn.init.zeros_(module.bias)
    return model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--figure", help="write the default-vs-He comparison figure here")
    parser.add_argument("--html", help="write the HTML report of the default-init model here")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    default = make_mlp()
    he = he_init_(make_mlp(), torch.Generator().manual_seed(1))
    reports = [
        diagnose(model, input_shape=(128, 256), generator=torch.Generator().manual_seed(0))
        for model in (default, he)
    ]
    for label, report in zip(("nn.Linear default init", "He init"), reports, strict=True):
        print(f"{label}: {report.verdict} -- {report.reason}")
    print(reports[0])
    if args.figure:
        compare(reports, labels=["nn.Linear default", "He (kaiming_normal_)"], path=args.figure)
        print(f"wrote {args.figure}")
    if args.html:
        reports[0].to_html(args.html)
        print(f"wrote {args.html}")


if __name__ == "__main__":
    main()
