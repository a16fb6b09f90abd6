"""Samples per second and bytes communicated per sample: distributed SGD on real processes.

Each algorithm trains the same MLP on the digits training set (minibatches of 32 per worker,
plain SGD) with p = 1, 2 and 4 workers, as real processes started by
`coursekit.distributed.launch` (gloo on CPU; nccl, one process per GPU or several on one, when
``--backend nccl``):

- ``allreduce``: synchronous SGD, one all-reduce of the gradient per step (p ranks);
- ``easgd``: synchronous EASGD with tau = 10, one all-reduce of the elastic differences every
  10 steps (p ranks);
- ``downpour``: Downpour with tau = 10, a parameter server on rank 0 and p workers (p + 1 ranks).

Samples per second counts every worker's samples over the slowest worker's training time
(`history["time"]`, from the first step to the last; process start-up and data loading are
not included). Bytes per sample is the payload all ranks sent (`runtime.stats`, headers
included), over the samples trained. The reference, run in this process between the
distributed runs, is the same model trained by a plain loop over the same minibatches with
torch.optim.SGD and no torch.distributed at all: the ratio column is a run's samples/s over
the reference's, so 1.0 means "as fast as one process without communication", and p workers
that scale perfectly would reach p (bounded by the machine's cores: a 2-core machine cannot
show more than 2). The last column is what a launch costs besides training: its wall-clock
seconds less the slowest worker's training time (process start-up, each rank importing torch
and loading the data, and shutdown).

    python benchmarks/distributed.py                       # the table in RESULTS.md
    python benchmarks/distributed.py --steps 100 --rounds 1 --workers 1 2   # a smoke run
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from coursekit.data import digits
from coursekit.distributed import launch
from coursekit.distributed.train import Config, worker
from coursekit.ensembles import minibatches
from coursekit.models import MLP

from _common import machine, timed

ALGORITHMS = ("allreduce", "easgd", "downpour")


def reference_samples_per_second(config: Config) -> float:
    """The same training as one worker, in this process, with no torch.distributed."""
    data = digits()
    model = MLP(config.sizes, generator=torch.Generator().manual_seed(config.seed))
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr)
    order = minibatches(len(data.x_train), config.batch_size, config.steps, seed=config.seed)
    batches = [(data.x_train[i], data.y_train[i]) for i in order]
    start = time.perf_counter()
    for x, y in batches:
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    return config.steps * config.batch_size / (time.perf_counter() - start)


def distributed_run(config: Config, workers: int) -> tuple[float, float, float]:
    """(samples per second, bytes sent per sample, seconds outside training) of one run."""
    asynchronous = config.algorithm == "downpour"
    wall, histories = timed(
        lambda: launch(worker, workers + asynchronous, config, backend=config.backend)
    )
    worker_histories = histories[1:] if asynchronous else histories
    seconds = max(h["time"][-1] for h in worker_histories)
    samples = workers * config.steps * config.batch_size
    sent = sum(h["bytes_sent"][-1] for h in histories)
    return samples / seconds, sent / samples, wall - seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--algorithms", nargs="+", choices=ALGORITHMS, default=list(ALGORITHMS))
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 256, 10])
    parser.add_argument("--steps", type=int, default=1000, help="steps per worker")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--tau", type=int, default=10, help="EASGD and Downpour period")
    parser.add_argument("--rounds", type=int, default=3, help="repetitions; medians reported")
    parser.add_argument("--backend", choices=["gloo", "nccl"], default=None)
    args = parser.parse_args()

    torch.set_num_threads(1)  # as each launched rank does: compare like with like
    params = sum(p.numel() for p in MLP(args.sizes).parameters())
    print(f"# machine: {machine()}; backend {args.backend or 'default'}")
    print(
        f"# MLP {'-'.join(map(str, args.sizes))} ({params:,} parameters, "
        f"{4 * params:,} bytes in float32), batch {args.batch_size} per worker, "
        f"{args.steps} steps per worker, tau {args.tau}, median of {args.rounds}"
    )
    print(
        "| algorithm | workers | ranks | samples/s | reference samples/s | ratio | "
        "bytes sent per sample | launch less training (s) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for algorithm in args.algorithms:
        for workers in args.workers:
            config = Config(
                algorithm=algorithm,
                sizes=tuple(args.sizes),
                lr=0.05,
                tau=args.tau,
                beta=0.9,
                steps=args.steps,
                batch_size=args.batch_size,
                eval_every=args.steps,
                backend=args.backend,
            )
            rates, references, per_sample, overheads = [], [], [], []
            for _ in range(args.rounds):  # alternate, so that a busy moment hits both
                references.append(reference_samples_per_second(config))
                rate, sent, overhead = distributed_run(config, workers)
                rates.append(rate)
                per_sample.append(sent)
                overheads.append(overhead)
            rate, reference = statistics.median(rates), statistics.median(references)
            ranks = workers + (algorithm == "downpour")
            print(
                f"| {algorithm} | {workers} | {ranks} | {rate:,.0f} | {reference:,.0f} | "
                f"{rate / reference:.2f} | {statistics.median(per_sample):,.0f} | "
                f"{statistics.median(overheads):.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
