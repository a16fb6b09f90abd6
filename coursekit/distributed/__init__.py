"""Distributed SGD on torch.distributed, and an in-process simulator of p workers.

- `runtime`: `launch` (torchrun's launcher, from Python), `init`, and collectives and
  point-to-point messages that time out and count the bytes they move (`stats`).
- `sync`: synchronous all-reduce SGD (by hand and through DDP), local SGD, EASGD.
- `asynchronous`: asynchronous EASGD, EAMSGD and Downpour with a parameter server on rank 0.
- `simulate`: p workers as one ``[p, d]`` tensor, for quadratics and least squares.
- `stability`: EASGD's stability map (synchronous and round robin) and ADMM's round-robin
  instability.
- `curves`: `run_curve`, a real run's test error against time and bytes sent.
- `train`: the training script, ``torchrun ... -m coursekit.distributed.train`` (not imported
  here, so that ``python -m`` runs it without a warning).

The figures of lecture 8 are drawn by `coursekit.plotting`, which this package does not import.
"""

from .asynchronous import run_async
from .curves import run_curve
from .runtime import (
    all_reduce,
    broadcast,
    init,
    irecv,
    isend,
    launch,
    load_checkpoint,
    recv,
    save_checkpoint,
    send,
    shutdown,
    stats,
)
from .simulate import (
    Simulation,
    simulate_admm_round_robin,
    simulate_downpour,
    simulate_easgd,
    simulate_easgd_quadratic,
    simulate_local_sgd,
)
from .stability import (
    admm_spectral_radius,
    easgd_mode_maps,
    easgd_round_robin_map,
    easgd_turn_map,
    order_radii,
    schedule_growth,
    stability_map,
    stable_fraction,
)
from .sync import DDP, EASGD, Algorithm, AllReduceSGD, LocalSGD, run, train_step

__all__ = [
    "DDP",
    "EASGD",
    "Algorithm",
    "AllReduceSGD",
    "LocalSGD",
    "Simulation",
    "admm_spectral_radius",
    "all_reduce",
    "broadcast",
    "easgd_mode_maps",
    "easgd_round_robin_map",
    "easgd_turn_map",
    "init",
    "irecv",
    "isend",
    "launch",
    "load_checkpoint",
    "order_radii",
    "recv",
    "run",
    "run_async",
    "run_curve",
    "save_checkpoint",
    "schedule_growth",
    "send",
    "shutdown",
    "simulate_admm_round_robin",
    "simulate_downpour",
    "simulate_easgd",
    "simulate_easgd_quadratic",
    "simulate_local_sgd",
    "stability_map",
    "stable_fraction",
    "stats",
    "train_step",
]
