"""Time a 41x41 loss slice of a digits MLP: per-point loop against vmap over grid points.

The model is the course's 64-100-10 MLP, trained for a few full-batch Adam steps; the loss is
cross-entropy over all 1,797 digits (train and test together), evaluated at every point of a
41 x 41 grid of `coursekit.landscapes.slice_2d` along two filter-normalised directions. The
variants are timed in interleaved rounds, so a slow-down of the (shared) machine hits all of
them alike; the table reports the median seconds per slice and the ratio to the plain loop.

    python benchmarks/landscape_slice.py                  # CPU
    python benchmarks/landscape_slice.py --device cuda
    python benchmarks/landscape_slice.py --grid 11 --rounds 2   # a quick smoke run
    python benchmarks/landscape_slice.py --chunks 4 16 64       # batched at other chunk sizes
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
from torch import nn
from torch.nn import functional as F

from coursekit.data import digits
from coursekit.landscapes import random_direction, slice_2d


def make_problem(device: str, dtype: torch.dtype):
    """A trained 64-100-10 MLP, all 1,797 digits, and two filter-normalised directions."""
    split = digits()
    x = torch.cat([split.x_train, split.x_test]).to(device, dtype)
    y = torch.cat([split.y_train, split.y_test]).to(device)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 100), nn.ReLU(), nn.Linear(100, 10)).to(device, dtype)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(100):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    gen = torch.Generator().manual_seed(0)
    directions = (random_direction(model, generator=gen), random_direction(model, generator=gen))
    return model, (x, y), directions


def variants(chunks: list[int]) -> dict[str, dict]:
    """Keyword arguments of `slice_2d` for each variant; the first is the baseline."""
    out = {
        "loop": dict(method="loop", reuse_first_layer=False),
        "batched": dict(method="batched", reuse_first_layer=False),
        "loop + reuse": dict(method="loop"),
        "batched + reuse": dict(method="batched"),
    }
    for chunk in chunks:
        out[f"batched + reuse, chunk {chunk}"] = dict(method="batched", chunk_size=chunk)
    out["auto (default)"] = dict()
    return out


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def machine(device: str) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    text = (
        f"{cpu}, {os.cpu_count()} CPUs, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}"
    )
    if device.startswith("cuda"):
        text += f", {torch.cuda.get_device_name()}"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--grid", type=int, default=41, help="points per axis")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--float64", action="store_true", help="model and data in float64")
    parser.add_argument("--chunks", type=int, nargs="*", default=[], help="extra chunk sizes")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    dtype = torch.float64 if args.float64 else torch.float32
    model, data, directions = make_problem(args.device, dtype)
    grid = torch.linspace(-1.0, 1.0, args.grid)
    runs = {
        label: dict(kwargs=kwargs, times=[], infos=[])
        for label, kwargs in variants(args.chunks).items()
    }

    def once(kwargs):
        sync(args.device)
        start = time.perf_counter()
        losses, info = slice_2d(
            model, F.cross_entropy, data, directions, grid, grid, return_info=True, **kwargs
        )
        sync(args.device)
        return time.perf_counter() - start, losses, info

    reference = once(runs["loop"]["kwargs"])[1]
    for run in runs.values():  # warm-up, and a check that every variant gives the same losses
        torch.testing.assert_close(once(run["kwargs"])[1], reference, rtol=1e-4, atol=1e-4)
    for _ in range(args.rounds):
        for run in runs.values():
            seconds, _, info = once(run["kwargs"])
            run["times"].append(seconds)
            run["infos"].append(info)

    print(
        f"machine: {machine(args.device)}; device: {args.device}; {str(dtype)[6:]}; "
        f"{args.grid}x{args.grid} slice, 64-100-10 MLP, {len(data[0]):,} samples; "
        f"median of {args.rounds} interleaved rounds\n"
    )
    base = statistics.median(runs["loop"]["times"])
    print("| variant | path used | chunk | seconds | loop / variant |")
    print("|---|---|---|---|---|")
    for label, run in runs.items():
        seconds, info = statistics.median(run["times"]), run["infos"][-1]
        used = "/".join(sorted({i.method for i in run["infos"]}))
        chunks = "/".join(str(c) for c in sorted({i.chunk_size for i in run["infos"]}))
        print(f"| {label} | {used} | {chunks} | {seconds:.3f} | {base / seconds:.2f}x |")
    print("\nauto, round by round (microseconds per point measured on the first chunk):")
    for info in runs["auto (default)"]["infos"]:
        timed = ", ".join(f"{k} {1e6 * v:.0f}" for k, v in info.seconds_per_point.items())
        print(f"- chose {info.method} ({timed})")


if __name__ == "__main__":
    main()
