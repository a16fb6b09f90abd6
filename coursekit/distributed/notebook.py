"""An EASGD worker written in a notebook, run as the ranks of a real job.

A function defined in a notebook cannot be sent to a spawned process by reference: pickle names
its module, and a notebook is none. `two_processes` sends the worker's *source text* instead;
each process (started by `coursekit.distributed.runtime.launch`, joined over TCP on 127.0.0.1)
compiles it with the names of `WORKER_NAMES` and calls it. Assignment 5 runs the student's worker
this way, in the notebook and in the grader's sandbox alike.

    run = two_processes(easgd_worker)
    out = run(X, y, x0, lr, alpha, tau, steps, batch_size, seed)
    out["workers"], out["centers"], out["bytes_sent"]   # (2, d), (2, d), (2,)
"""

from __future__ import annotations

import hashlib
import inspect
import math
import textwrap
from collections.abc import Callable

import torch
from torch import Tensor

WORLD_SIZE = 2
# What a worker's source may use without importing it (the names assignment 5's notebook uses).
WORKER_NAMES = ("torch", "dist", "all_reduce", "minibatches", "math")


def _worker_globals() -> dict:
    import torch.distributed as dist

    from coursekit.distributed.runtime import all_reduce
    from coursekit.ensembles import minibatches

    return {"torch": torch, "dist": dist, "all_reduce": all_reduce,
            "minibatches": minibatches, "math": math}  # fmt: skip


def _run_rank(source: str, name: str, *args) -> tuple[Tensor, Tensor, int]:
    """In each launched process: compile the worker's source, run it, count what it sent."""
    import linecache

    from coursekit.distributed import runtime

    filename = f"<{name}>"  # so that a traceback shows the worker's own lines
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace = {"__name__": "__worker__", **_worker_globals()}
    exec(compile(source, filename, "exec"), namespace)
    runtime.stats.reset()
    result = namespace[name](*args)
    if not (isinstance(result, tuple | list) and len(result) == 2):
        raise TypeError(f"{name} returned a {type(result).__name__}; expected (x, center)")
    x, center = (torch.as_tensor(t).detach().clone() for t in result)
    return x, center, runtime.stats.bytes_sent


_RUNS: dict[tuple, dict[str, Tensor]] = {}  # finished runs, by (source, arguments)


def _digest(*tensors: Tensor) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(str((t.dtype, tuple(t.shape))).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def run_source(source: str, name: str) -> Callable[..., dict[str, Tensor]]:
    """`two_processes` for a worker given as source text defining the function `name`."""
    source = textwrap.dedent(source)

    def run(X, y, x0, lr, alpha, tau, steps, batch_size, seed) -> dict[str, Tensor]:
        from coursekit.distributed.runtime import launch

        key = (source, name, _digest(X, y, x0), lr, alpha, tau, steps, batch_size, seed)
        if key not in _RUNS:
            args = (X, y, x0, lr, alpha, tau, steps, batch_size, seed)
            try:
                ranks = launch(  # gloo: the tensors are on the CPU, also where CUDA is
                    _run_rank, WORLD_SIZE, source, name, *args, backend="gloo", timeout=30.0
                )
            except RuntimeError as error:
                failures = [ln for ln in str(error).splitlines() if " failed: " in ln]
                if failures and all("failed: NotImplementedError" in ln for ln in failures):
                    raise NotImplementedError(name) from None
                raise
            _RUNS[key] = {
                "workers": torch.stack([x for x, _, _ in ranks]),
                "centers": torch.stack([c for _, c, _ in ranks]),
                "bytes_sent": torch.tensor([float(b) for _, _, b in ranks], dtype=torch.float64),
            }
        return {k: v.clone() for k, v in _RUNS[key].items()}

    run.__name__ = name
    return run


def two_processes(worker: Callable) -> Callable[..., dict[str, Tensor]]:
    """`worker` as the ranks of a real run: ``run(X, y, x0, lr, ..., seed) -> dict`` of tensors.

    ``run(*args)`` starts `WORLD_SIZE` processes; each compiles `worker`'s source with the names
    of `WORKER_NAMES` only and calls ``worker(*args)``, which returns its ``(x_i, center)``. The
    result: ``"workers"`` (2, d) and ``"centers"`` (2, d), rank r in row r, and ``"bytes_sent"``
    (2,), what each rank sent through `runtime.all_reduce`. A run is remembered by the worker's
    source and the arguments, so checking the same run again does not start the processes again.
    """
    return run_source(inspect.getsource(worker), worker.__name__)
