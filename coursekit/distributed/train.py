"""Train an MLP on digits with distributed SGD: the course's training script.

One machine, two processes (CPU: gloo; one GPU each with nccl when CUDA is available):

    torchrun --nproc-per-node 2 -m coursekit.distributed.train --algorithm easgd --tau 4 --steps 500

Two machines with four processes each (run the same line on both; HOST is the first's name):

    torchrun --nnodes 2 --nproc-per-node 4 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \\
        -m coursekit.distributed.train --algorithm easgd --tau 10 --beta 0.9 --steps 2000

From Python, without torchrun: ``launch(worker, 4, Config(algorithm="allreduce"))`` returns the
four ranks' histories. Every rank starts from the same seeded initialisation; rank r draws its
minibatches with seed ``seed + r``. The history of a rank is a dict of lists: step, time,
train_loss, test_error (of the center for EASGD, of the averaged model otherwise), bytes_sent,
bytes_received; rank 0 prints it at the end. The asynchronous algorithms (async_easgd, eamsgd,
downpour) make rank 0 a parameter server: its history holds the center's test error, the
workers' hold their train losses.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from coursekit.data import digits
from coursekit.distributed import asynchronous, runtime, sync
from coursekit.ensembles import minibatches
from coursekit.models import MLP

__all__ = ["ALGORITHMS", "Config", "main", "run_sequence", "worker"]


@dataclass
class Config:
    algorithm: str = "easgd"  # a key of ALGORITHMS
    sizes: tuple[int, ...] = (64, 64, 10)  # the MLP's layer widths
    lr: float = 0.05  # eta, the local optimizer's learning rate
    momentum: float = 0.0  # of the local torch.optim.SGD; EAMSGD's delta
    tau: int = 4  # communication period (local_sgd, easgd, async_easgd, eamsgd, downpour)
    beta: float = 0.9  # EASGD: alpha = beta / p
    steps: int = 500  # steps per worker
    batch_size: int = 32  # per worker
    seed: int = 0  # initialisation; rank r's minibatches use seed + r
    eval_every: int = 50  # steps between records (test error on x_test)
    dtype: str = "float32"  # or "float64"
    backend: str | None = None  # None: nccl with CUDA, gloo without
    timeout: float = 60.0  # seconds, on every collective and receive
    checkpoint_dir: str | None = None  # where each rank saves its state
    checkpoint_every: int = 0  # communication rounds between checkpoints (0: never)
    resume: bool = False  # continue from the newest checkpoint in checkpoint_dir
    crash_at: tuple[int, int] | None = None  # (rank, step): that rank dies there (fault demo)


def _build_sync(config: Config, model: nn.Module, world_size: int) -> sync.Algorithm:
    if config.algorithm == "allreduce":
        return sync.AllReduceSGD(model)
    if config.algorithm == "ddp":
        return sync.DDP(model)
    if config.algorithm == "local_sgd":
        return sync.LocalSGD(model, tau=config.tau)
    return sync.EASGD(model, alpha=config.beta / world_size, tau=config.tau)


#: The settings that determine the trajectory: a checkpoint resumes only a run with the same.
_TRAJECTORY = (
    "algorithm",
    "sizes",
    "lr",
    "momentum",
    "tau",
    "beta",
    "batch_size",
    "seed",
    "eval_every",
    "dtype",
)


def _check_same_run(config: Config, saved: dict) -> None:
    def same(a, b):  # a tuple may come back as a list
        return list(a) == list(b) if isinstance(a, (list, tuple)) else a == b

    differ = [
        f"{k}: {saved[k]!r} saved, {getattr(config, k)!r} now"
        for k in _TRAJECTORY
        if not same(saved[k], getattr(config, k))
    ]
    if differ:
        raise ValueError("Cannot resume a different run: " + "; ".join(differ))


def _run_sync(config: Config) -> dict[str, list]:
    """One rank of a synchronous run: every rank is a worker."""
    rank, world_size, device = runtime.init(config.backend, config.timeout)
    dtype = getattr(torch, config.dtype)
    data = digits(dtype=dtype)
    x_test, y_test = data.x_test.to(device), data.y_test.to(device)
    model = MLP(config.sizes, generator=torch.Generator().manual_seed(config.seed))
    model = model.to(device, dtype)
    algorithm = _build_sync(config, model, world_size)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum)

    history, start, window = None, 0, []
    if config.resume and config.checkpoint_dir:
        state = runtime.load_checkpoint(config.checkpoint_dir, map_location=device)
        if state is not None:
            _check_same_run(config, state["config"])
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            algorithm.load_state_dict(state["algorithm"])
            runtime.stats.load_state_dict(state["stats"])
            history, start, window = state["history"], state["step"], state["window"]

    def save(step: int) -> None:
        state = {
            "config": dataclasses.asdict(config),
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "algorithm": algorithm.state_dict(),
            "stats": runtime.stats.state_dict(),
            "history": history,
            "window": list(window),
        }
        runtime.save_checkpoint(config.checkpoint_dir, state, step=step)

    def before_step(t: int) -> None:
        if config.crash_at == (rank, t):
            os._exit(1)  # like a machine that dies: no clean-up, no error message
        every = config.checkpoint_every * algorithm.period
        if config.checkpoint_dir and every and t > start and t % every == 0:
            save(t)  # between rounds: no message is in flight

    eval_model = MLP(config.sizes).to(device, dtype)

    @torch.no_grad()
    def evaluate(flat: Tensor) -> float:
        sync._assign(eval_model, flat)
        return (eval_model(x_test).argmax(-1) != y_test).to(dtype).mean().item()

    # The minibatch sequence is a function of the seed alone: to resume, skip what is done.
    n = len(data.x_train)
    order = minibatches(n, config.batch_size, config.steps, seed=config.seed + rank)
    batches = ((data.x_train[i], data.y_train[i]) for i in itertools.islice(order, start, None))
    if history is None:  # a fresh run: record the start, as the asynchronous server does
        history = sync.new_history()
        for key, value in (
            ("step", 0),
            ("time", 0.0),
            ("train_loss", math.nan),
            ("test_error", evaluate(algorithm.consensus())),
            ("bytes_sent", runtime.stats.bytes_sent),
            ("bytes_received", runtime.stats.bytes_received),
        ):
            history[key].append(value)
    history = sync.run(
        algorithm,
        optimizer,
        F.cross_entropy,
        batches,
        steps=config.steps,
        start=start,
        record_every=config.eval_every,
        evaluate=evaluate,
        history=history,
        window=window,
        before_step=before_step,
    )
    if config.checkpoint_dir:
        save(config.steps)
    return history


def _run_async(config: Config) -> dict[str, list]:
    """One rank of an asynchronous run: rank 0 is the parameter server, the others workers.

    With ``world_size`` ranks there are ``p = world_size - 1`` workers, so ``alpha = beta / p``.
    The server records the center's test error about every `eval_every` steps of a worker.
    """
    if config.checkpoint_dir or config.resume or config.crash_at:
        raise ValueError(
            f"Invalid algorithm for checkpoint_dir, resume or crash_at: "
            f"{config.algorithm!r} (synchronous algorithms only)"
        )
    rank, world_size, device = runtime.init(config.backend, config.timeout)
    if world_size < 2:
        raise ValueError(
            f"Invalid world size for {config.algorithm!r}: {world_size} "
            "(must be >= 2: a server and at least one worker)"
        )
    workers = world_size - 1
    dtype = getattr(torch, config.dtype)
    data = digits(dtype=dtype)
    x_test, y_test = data.x_test.to(device), data.y_test.to(device)
    model = MLP(config.sizes, generator=torch.Generator().manual_seed(config.seed))
    model = model.to(device, dtype)

    @torch.no_grad()
    def evaluate(center: nn.Module) -> float:
        return (center(x_test).argmax(-1) != y_test).to(dtype).mean().item()

    order = minibatches(len(data.x_train), config.batch_size, config.steps, seed=config.seed + rank)
    batches = ((data.x_train[i].to(device), data.y_train[i].to(device)) for i in order)
    # The server makes p / tau exchanges per step of a worker.
    eval_every = max(1, round(config.eval_every * workers / config.tau))
    return asynchronous.run_async(
        config.algorithm,
        model,
        F.cross_entropy,
        batches if rank else None,
        steps=config.steps,
        lr=config.lr,
        tau=config.tau,
        alpha=None if config.algorithm == "downpour" else config.beta / workers,
        momentum=config.momentum,
        eval_fn=evaluate,
        eval_every=eval_every,
        timeout=config.timeout,
    )


#: ``--algorithm`` choices: a function run on every rank that returns that rank's history.
#: Synchronous ones make every rank a worker; asynchronous ones make rank 0 a parameter server.
ALGORITHMS: dict[str, Callable[[Config], dict[str, list]]] = {
    **{name: _run_sync for name in ("allreduce", "ddp", "local_sgd", "easgd")},
    **{name: _run_async for name in asynchronous.ALGORITHMS},
}


def worker(config: Config) -> dict[str, list]:
    """Run `config` on the calling rank (under `runtime.launch` or torchrun); its history."""
    if config.algorithm not in ALGORITHMS:
        raise ValueError(
            f"Invalid algorithm: {config.algorithm!r} (must be one of {sorted(ALGORITHMS)})"
        )
    for name in ("steps", "batch_size", "eval_every", "tau"):
        if getattr(config, name) < 1:
            raise ValueError(f"Invalid {name}: {getattr(config, name)!r} (must be >= 1)")
    if config.beta < 0:
        raise ValueError(f"Invalid beta: {config.beta!r} (must be >= 0)")
    if config.checkpoint_every < 0:
        raise ValueError(f"Invalid checkpoint_every: {config.checkpoint_every!r} (must be >= 0)")
    return ALGORITHMS[config.algorithm](config)


def run_sequence(configs: Sequence[Config]) -> list[dict[str, list]]:
    """Run several configurations one after the other on the calling rank; their histories.

    ``launch(run_sequence, p, [config_a, config_b])`` gives what two launches would give, but
    pays the processes' start-up (seconds per rank: each imports torch) once. Each run counts
    its bytes from zero, and a barrier separates the runs: ranks leave an asynchronous run at
    different times, and a worker's first message of the next run must not reach a server
    that is still serving this one.
    """
    histories = []
    for config in configs:
        runtime.stats.reset()
        histories.append(worker(config))
        dist.barrier()
    return histories


def _parse(argv: list[str] | None) -> tuple[Config, str | None]:
    parser = argparse.ArgumentParser(
        prog="coursekit.distributed.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    default = Config()
    parser.add_argument("--algorithm", choices=sorted(ALGORITHMS), default=default.algorithm)
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=list(default.sizes),
        help="MLP layer widths (default: 64 64 10)",
    )
    for name, kind, text in [
        ("lr", float, "learning rate eta"),
        ("momentum", float, "momentum of the local SGD"),
        ("tau", int, "communication period (local_sgd, easgd)"),
        ("beta", float, "EASGD: alpha = beta / p"),
        ("steps", int, "steps per worker"),
        ("batch-size", int, "minibatch size per worker"),
        ("seed", int, "initialisation seed; rank r draws minibatches with seed + r"),
        ("eval-every", int, "steps between records"),
        ("timeout", float, "seconds allowed to every collective and receive"),
        ("checkpoint-every", int, "communication rounds between checkpoints (0: never)"),
    ]:
        field = name.replace("-", "_")
        value = getattr(default, field)
        parser.add_argument(f"--{name}", type=kind, default=value, help=f"{text} ({value})")
    parser.add_argument("--dtype", choices=["float32", "float64"], default=default.dtype)
    parser.add_argument("--backend", choices=["gloo", "nccl"], default=None)
    parser.add_argument("--checkpoint-dir", default=None, help="each rank saves its state here")
    parser.add_argument("--resume", action="store_true", help="continue from --checkpoint-dir")
    parser.add_argument(
        "--crash-at",
        type=int,
        nargs=2,
        metavar=("RANK", "STEP"),
        help="that rank dies abruptly before that step (a fault to recover from)",
    )
    parser.add_argument("--output", default=None, help="write history_rank{r}.json here")
    args = vars(parser.parse_args(argv))
    output = args.pop("output")
    args["sizes"] = tuple(args["sizes"])
    args["crash_at"] = tuple(args["crash_at"]) if args["crash_at"] else None
    return Config(**args), output


def main(argv: list[str] | None = None) -> None:
    """The command line: run under torchrun (it sets RANK, WORLD_SIZE, MASTER_ADDR, ...)."""
    config, output = _parse(argv)
    rank, world_size, _ = runtime.init(config.backend, config.timeout)
    try:
        history = worker(config)
        # Leave together: a rank that tears its process group down while a peer is still
        # finishing made that peer abort at exit now and then (gloo, 1 run in 12 on a busy
        # machine). After an error there is no barrier: the peers may be dead.
        dist.barrier()
    finally:
        runtime.shutdown()
    if output:
        Path(output).mkdir(parents=True, exist_ok=True)
        with open(Path(output) / f"history_rank{rank}.json", "w") as f:
            json.dump({"config": dataclasses.asdict(config), **history}, f)
    if rank == 0:
        print(f"{config.algorithm} on {world_size} ranks")
        print(f"{'step':>6} {'time':>8} {'train_loss':>10} {'test_error':>10} {'bytes_sent':>12}")
        for row in zip(
            *(history[k] for k in ("step", "time", "train_loss", "test_error", "bytes_sent"))
        ):
            print("{:6d} {:8.2f} {:10.4f} {:10.4f} {:12d}".format(*row))


if __name__ == "__main__":
    main()
