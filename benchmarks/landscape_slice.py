"""Time a 41x41 loss slice of a digits MLP: per-point loop against vmap over grid points.

The model is a 64-100-10 ReLU MLP, trained for a few full-batch Adam steps; the loss is
cross-entropy over all 1,797 digits (train and test together), evaluated at every point of a
41 x 41 grid of `coursekit.landscapes.slice_2d` along two filter-normalised directions. The
variants (`SliceOptions`) are timed in interleaved rounds, so a slow-down of the (shared)
machine hits all of them alike; the table reports the median seconds per slice and the ratio
to the plain loop.

    python benchmarks/landscape_slice.py                  # CPU
    python benchmarks/landscape_slice.py --device cuda
    python benchmarks/landscape_slice.py --grid 11 --rounds 2   # a quick smoke run
    python benchmarks/landscape_slice.py --chunks 4 16 64       # batched at other chunk sizes
    python benchmarks/landscape_slice.py --hidden 32 --float64 --grid 25 --threads 1  # lecture 2
"""

from __future__ import annotations

import argparse
import statistics
from functools import partial

import torch
from torch import nn
from torch.nn import functional as F

from coursekit.data import digits
from coursekit.landscapes import SliceInfo, SliceOptions, random_direction, slice_2d

from _common import machine, timed


def make_problem(device: str, dtype: torch.dtype, hidden: int):
    """A trained 64-hidden-10 MLP, all 1,797 digits, and two filter-normalised directions."""
    split = digits()
    x = torch.cat([split.x_train, split.x_test]).to(device, dtype)
    y = torch.cat([split.y_train, split.y_test]).to(device)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))
    model = model.to(device, dtype)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(100):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    gen = torch.Generator().manual_seed(0)
    directions = (random_direction(model, generator=gen), random_direction(model, generator=gen))
    return model, (x, y), directions


def variants(chunks: list[int]) -> dict[str, SliceOptions]:
    """The options of `slice_2d` for each variant; the first is the baseline."""
    out = {
        "loop": SliceOptions(method="loop", reuse_first_layer=False),
        "batched": SliceOptions(method="batched", reuse_first_layer=False),
        "loop + reuse": SliceOptions(method="loop"),
        "batched + reuse": SliceOptions(method="batched"),
    }
    for chunk in chunks:
        out[f"batched + reuse, chunk {chunk}"] = SliceOptions(method="batched", chunk_size=chunk)
    out["default"] = SliceOptions()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--grid", type=int, default=41, help="points per axis")
    parser.add_argument("--hidden", type=int, default=100, help="hidden units of the MLP")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--float64", action="store_true", help="model and data in float64")
    parser.add_argument("--chunks", type=int, nargs="*", default=[], help="extra chunk sizes")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    dtype = torch.float64 if args.float64 else torch.float32
    model, data, directions = make_problem(args.device, dtype, args.hidden)
    grid = torch.linspace(-1.0, 1.0, args.grid)
    runs = {label: dict(options=o, times=[]) for label, o in variants(args.chunks).items()}
    plane = partial(slice_2d, model, F.cross_entropy, data, directions, grid, grid)

    def once(options: SliceOptions) -> tuple[float, tuple[torch.Tensor, SliceInfo]]:
        """Seconds, and the losses and `SliceInfo`, of one slice."""
        return timed(lambda: plane(options=options, return_info=True), args.device)

    reference = once(runs["loop"]["options"])[1][0]
    for run in runs.values():  # warm-up, and a check that every variant gives the same losses
        _, (losses, run["info"]) = once(run["options"])
        torch.testing.assert_close(losses, reference, rtol=1e-4, atol=1e-4)
    for _ in range(args.rounds):
        for run in runs.values():
            run["times"].append(once(run["options"])[0])

    print(
        f"machine: {machine(args.device)}; device: {args.device}; {str(dtype)[6:]}; "
        f"{args.grid}x{args.grid} slice, 64-{args.hidden}-10 MLP, {len(data[0]):,} samples; "
        f"median of {args.rounds} interleaved rounds\n"
    )
    base = statistics.median(runs["loop"]["times"])
    print("| variant | path used | chunk | seconds | loop / variant |")
    print("|---|---|---|---|---|")
    for label, run in runs.items():
        seconds, info = statistics.median(run["times"]), run["info"]
        print(
            f"| {label} | {info.method} | {info.chunk_size} | {seconds:.3f} "
            f"| {base / seconds:.2f}x |"
        )


if __name__ == "__main__":
    main()
