"""Overhead of ``initscope.diagnose`` against a plain forward + backward of the same model and
batch.

    python benchmarks/bench_diagnose.py [--repeats 9] [--threads N]

Models: a 50-layer ReLU MLP of width 512 (He init) with a batch of 256, and a small CIFAR-style
ResNet (3 stages x 3 BasicBlocks, 16/32/64 channels, BatchNorm) with a batch of 64 at 32x32.
The plain pass is ``(model(x) * g).sum().backward()``, what a training step costs without an
optimizer; diagnose does the same pass plus its hooks, statistics, the host transfer and the theory.
The two are timed alternately in one run; the ratio of the medians is the result (the ratio of
the minima is printed too: on a shared machine, stalls of the parallel reductions inflate both).
Target: diagnose / plain <= 1.5.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn as nn

from initscope import diagnose


def mlp(depth: int = 50, width: int = 512) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(depth):
        linear = nn.Linear(width, width)
        nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")
        nn.init.zeros_(linear.bias)
        layers += [linear, nn.ReLU()]
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


def resnet(blocks: int = 3) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()]
    c_in = 16
    for c_out, stride in ((16, 1), (32, 2), (64, 2)):
        for i in range(blocks):
            layers.append(BasicBlock(c_in, c_out, stride if i == 0 else 1))
            c_in = c_out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)]
    return nn.Sequential(*layers)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench(name: str, model: nn.Module, x: torch.Tensor, repeats: int) -> float:
    g = torch.randn_like(model(x))

    def plain() -> None:
        (model(x) * g).sum().backward()
        for p in model.parameters():
            p.grad = None

    def diag() -> None:
        diagnose(model, x, generator=torch.Generator().manual_seed(0))

    for _ in range(2):
        plain()
        diag()
    t_plain, t_diag = [], []
    for _ in range(repeats):
        t_plain.append(timed(plain))
        t_diag.append(timed(diag))
    a, b = statistics.median(t_plain), statistics.median(t_diag)
    ratio = b / a
    print(
        f"{name:<34} plain {a * 1e3:8.1f} ms   diagnose {b * 1e3:8.1f} ms   ratio {ratio:5.2f}x "
        f"(min/min {min(t_diag) / min(t_plain):4.2f}x)   target <= 1.5x: "
        f"{'ok' if ratio <= 1.5 else 'MISSED'}"
    )
    return ratio


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, medians of {args.repeats}"
    )
    bench("MLP 50 x 512, ReLU, batch 256", mlp(), torch.randn(256, 512), args.repeats)
    bench("ResNet-20 style, batch 64, 32x32", resnet(), torch.randn(64, 3, 32, 32), args.repeats)


if __name__ == "__main__":
    main()
