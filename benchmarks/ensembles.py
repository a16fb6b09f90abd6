"""Train 100 small MLPs at once (coursekit.ensembles) against a Python loop over the 100 models.

Both variants start from the same 100 initialisations (64-25-10 MLPs on the digits training
set, cross-entropy) and take the same 200 SGD steps (momentum 0.9) with coursekit.optim.SGD:
the loop gives every model its own optimizer and trains the models one after the other; the
ensemble stacks them and takes each step for all 100 at once. One row per batch setting: full
batch, and fixed minibatch sequences shared by all models. The variants alternate round by
round, so a slow-down of the (shared) machine hits both alike; the table reports the median
seconds, the speed-up of the ensemble, and the largest difference between the final weights
of the two (the runs are the same computation, so it must be rounding error: in float32,
small-batch SGD amplifies differences of a few ulps to about 1e-4 over 200 steps, while
`--dtype float64` gives about 1e-12).

One torch thread by default: on a small machine shared with other jobs, two OpenMP threads
working on the loop's small operations wait for each other (a step of one model measured
10-60x slower than with one thread), which would flatter the ensemble. `--threads 2` measures
torch's default anyway.

    python benchmarks/ensembles.py                          # full batch, batches of 64 and 16
    python benchmarks/ensembles.py --batch-sizes 0 --activation relu --threads 2
    python benchmarks/ensembles.py --steps 20 --rounds 1    # a quick smoke run
    python benchmarks/ensembles.py --breakdown              # where a full-batch step's time goes

`--breakdown` profiles one full-batch step of all models both ways and lists torch's own time
per operator: it shows whether the loop pays per-call overhead (which batching removes) or
does real work (which batching cannot remove).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F

from coursekit.data import digits
from coursekit.ensembles import Ensemble, minibatches, train_ensemble
from coursekit.models import MLP
from coursekit.optim import SGD

from _common import machine

SGD_ARGS = dict(lr=0.1, momentum=0.9)


def make_models(args: argparse.Namespace) -> list[torch.nn.Module]:
    """`args.models` MLPs, model k initialised from its own generator seeded with k."""
    dtype = getattr(torch, args.dtype)
    return [
        MLP(args.sizes, args.activation, generator=torch.Generator().manual_seed(k)).to(dtype)
        for k in range(args.models)
    ]


def run_loop(models, x, y, batch_size, args) -> tuple[float, list[torch.nn.Module]]:
    """Seconds to train each model alone, one after the other; the trained models."""
    batches = [None] * args.steps
    if batch_size:
        batches = list(minibatches(len(x), batch_size, args.steps, seed=args.seed))
    start = time.perf_counter()
    for model in models:
        optimizer = SGD(model.parameters(), **SGD_ARGS)
        for idx in batches:
            xb, yb = (x, y) if idx is None else (x[idx], y[idx])
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(xb), yb).backward()
            optimizer.step()
    return time.perf_counter() - start, models


def run_ensemble(models, x, y, batch_size, args) -> tuple[float, list[torch.nn.Module]]:
    """Seconds to train all models at once (stacking included); the trained models."""
    start = time.perf_counter()
    ensemble = Ensemble(models)
    optimizer = SGD(ensemble.parameters(), **SGD_ARGS)
    train_ensemble(
        ensemble,
        optimizer,
        F.cross_entropy,
        x,
        y,
        steps=args.steps,
        batch_size=batch_size or None,
        seed=args.seed,
    )
    return time.perf_counter() - start, ensemble.unstack()


def max_weight_difference(a: list[torch.nn.Module], b: list[torch.nn.Module]) -> float:
    return max(
        (p - q).abs().max().item()
        for m, n in zip(a, b)
        for p, q in zip(m.parameters(), n.parameters())
    )


def breakdown(x, y, args) -> None:
    """Print milliseconds per full-batch step of all models, per torch operator, both ways."""
    models = make_models(args)
    optimizers = [SGD(m.parameters(), **SGD_ARGS) for m in models]
    ensemble = Ensemble(copy.deepcopy(models))
    ens_optimizer = SGD(ensemble.parameters(), **SGD_ARGS)

    def loop_step():
        for model, optimizer in zip(models, optimizers):
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            optimizer.step()

    def ensemble_step():
        ens_optimizer.zero_grad(set_to_none=True)
        ensemble.losses(F.cross_entropy, x, y).sum().backward()
        ens_optimizer.step()

    rows: dict[str, list[float]] = {}
    totals = []
    for column, step in enumerate((loop_step, ensemble_step)):
        for _ in range(2):  # warm-up
            step()
        repeats = 5
        start = time.perf_counter()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(repeats):
                step()
        totals.append((time.perf_counter() - start) / repeats * 1e3)
        for event in prof.key_averages():
            rows.setdefault(event.key, [0.0, 0.0])[column] += (
                event.self_cpu_time_total / 1e3 / repeats
            )
    print("| operator | loop (ms/step) | ensemble (ms/step) |")
    print("|---|---|---|")
    ranked = sorted(rows.items(), key=lambda item: -max(item[1]))
    for name, (loop_ms, ens_ms) in ranked[:10]:
        print(f"| {name} | {loop_ms:.1f} | {ens_ms:.1f} |")
    rest = [sum(ms[c] for _, ms in ranked[10:]) for c in (0, 1)]
    print(f"| all other operators | {rest[0]:.1f} | {rest[1]:.1f} |")
    print(f"| wall clock, profiled | {totals[0]:.1f} | {totals[1]:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 25, 10])
    parser.add_argument("--activation", default="tanh")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument(
        "--batch-sizes",
        type=int,
        nargs="+",
        default=[0, 64, 16],
        help="0 is full batch; otherwise a fixed minibatch sequence",
    )
    parser.add_argument("--rounds", type=int, default=3, help="timed runs of each variant")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the minibatch sequence")
    parser.add_argument(
        "--breakdown", action="store_true", help="profile one full-batch step per operator"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    split = digits(dtype=getattr(torch, args.dtype))
    x, y = split.x_train, split.y_train
    sizes = "-".join(map(str, args.sizes))
    print(f"machine: {machine()}")
    print(
        f"{args.models} MLPs {sizes} ({args.activation}, {args.dtype}) on digits "
        f"({len(x)} training images), {args.steps} steps of SGD(lr=0.1, momentum=0.9); "
        f"median of {args.rounds} rounds\n"
    )
    if args.breakdown:
        breakdown(x, y, args)
        return
    print("| batch | Python loop (s) | ensemble (s) | speed-up | max abs weight difference |")
    print("|---|---|---|---|---|")
    for batch_size in args.batch_sizes:
        times: dict[str, list[float]] = {"loop": [], "ensemble": []}
        for _ in range(args.rounds):
            initial = make_models(args)
            seconds, looped = run_loop(copy.deepcopy(initial), x, y, batch_size, args)
            times["loop"].append(seconds)
            seconds, stacked = run_ensemble(initial, x, y, batch_size, args)
            times["ensemble"].append(seconds)
        loop, ens = statistics.median(times["loop"]), statistics.median(times["ensemble"])
        label = f"full ({len(x)})" if not batch_size else f"{batch_size} (fixed sequence)"
        print(
            f"| {label} | {loop:.2f} | {ens:.2f} | {loop / ens:.1f}x | "
            f"{max_weight_difference(looped, stacked):.1e} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
