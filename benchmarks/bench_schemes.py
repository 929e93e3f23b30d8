"""Speed of initscope's samplers against torch.nn.init, in one run on the same tensors.

    python benchmarks/bench_schemes.py [--repeats 9] [--size 4096] [--threads N]

1. Truncated normals on a size x size float32 tensor: ``initscope.trunc_normal_`` (torch's
   distribution and bounds), ``initscope.truncated_normal_`` (bounds in stds, variance corrected),
   ``torch.nn.init.trunc_normal_`` and the reference ``Tensor.normal_``, each with a seeded
   generator. Target: both of ours <= 1.5x ``normal_``.
2. ``initscope.sparse_`` (vectorized, mask from the generator) against ``torch.nn.init.sparse_``
   (a Python loop over columns) on a 2048 x 2048 tensor with sparsity 0.1.

The methods are timed in interleaved rounds and the medians reported: the machine may be shared,
and interleaving gives each method the same share of the noise.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch

import initscope


def interleaved_medians(methods: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in methods}
    for fn in methods.values():  # warm-up: allocator, lazy imports
        fn()
    for _ in range(repeats):
        for name, fn in methods.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def table(medians: dict[str, float], reference: str) -> None:
    base = medians[reference]
    for name, t in medians.items():
        print(f"  {name:34s} {t * 1e3:9.1f} ms   {t / base:6.2f}x {reference}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"load average {os.getloadavg()[0]:.1f}, {args.repeats} interleaved rounds (medians)"
    )

    g = torch.Generator().manual_seed(0)
    w = torch.empty(args.size, args.size)
    print(f"\nTruncated normal, {args.size}x{args.size} float32 (std 1, bounds [-2, 2]):")
    medians = interleaved_medians(
        {
            "Tensor.normal_": lambda: w.normal_(generator=g),
            "initscope.trunc_normal_": lambda: initscope.trunc_normal_(w, generator=g),
            "initscope.truncated_normal_": lambda: initscope.truncated_normal_(w, generator=g),
        },
        args.repeats,
    )
    # torch's version runs apart: its multi-threaded passes would disturb the others' timings
    medians |= interleaved_medians(
        {"torch.nn.init.trunc_normal_": lambda: torch.nn.init.trunc_normal_(w, generator=g)},
        max(3, args.repeats // 3),
    )
    table(medians, "Tensor.normal_")
    worst = max(medians["initscope.trunc_normal_"], medians["initscope.truncated_normal_"])
    ratio = worst / medians["Tensor.normal_"]
    print(f"  target: ours <= 1.5x normal_ -> {ratio:.2f}x, {'met' if ratio <= 1.5 else 'MISSED'}")
    speedup = medians["torch.nn.init.trunc_normal_"] / medians["initscope.trunc_normal_"]
    print(f"  initscope.trunc_normal_ is {speedup:.1f}x faster than torch's")

    s = torch.empty(2048, 2048)
    print("\nsparse_, 2048x2048 float32, sparsity 0.1:")
    medians = interleaved_medians(
        {
            "torch.nn.init.sparse_": lambda: torch.nn.init.sparse_(s, 0.1, generator=g),
            "initscope.sparse_": lambda: initscope.sparse_(s, 0.1, generator=g),
        },
        args.repeats,
    )
    table(medians, "torch.nn.init.sparse_")
    speedup = medians["torch.nn.init.sparse_"] / medians["initscope.sparse_"]
    print(f"  initscope.sparse_ is {speedup:.1f}x faster than torch's")


if __name__ == "__main__":
    main()
