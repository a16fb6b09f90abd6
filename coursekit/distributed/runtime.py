"""The runtime under the distributed algorithms: start ranks, talk with a byte count, checkpoint.

    def hello() -> int:
        t = torch.ones(1)
        all_reduce(t)                  # every rank now holds world_size
        return int(t.item())

    launch(hello, 4)                   # [4, 4, 4, 4], one value per rank, in rank order

`launch` starts real processes on this machine the way ``torchrun`` does; a script that calls
`init` runs unchanged under ``torchrun`` on one or many machines. The wrappers `all_reduce`,
`broadcast`, `send`, `recv`, `isend`, `irecv` are torch.distributed's, plus a count of the
payload bytes each rank sends and receives (`stats`) and a timeout on every receive, so a dead
peer gives an error that names it instead of a hang.

Bytes are payload bytes, ``numel * element_size`` per call. An all-reduce counts its payload once
as sent and once as received; on the wire a ring all-reduce moves ``2 (p - 1) / p`` of it each
way per rank (a reduce-scatter, then an all-gather), a tree or a parameter server other amounts.
"""

from __future__ import annotations

import datetime
import os
import signal
import socket
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "CommStats",
    "Request",
    "all_reduce",
    "broadcast",
    "init",
    "irecv",
    "isend",
    "launch",
    "load_checkpoint",
    "recv",
    "save_checkpoint",
    "send",
    "shutdown",
    "stats",
]


@dataclass
class CommStats:
    """Payload bytes this rank sent and received, and the number of calls, since the last reset."""

    bytes_sent: int = 0
    bytes_received: int = 0
    calls: int = 0

    def reset(self) -> None:
        self.bytes_sent = self.bytes_received = self.calls = 0

    def state_dict(self) -> dict[str, int]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.bytes_sent, self.bytes_received = state["bytes_sent"], state["bytes_received"]
        self.calls = state["calls"]


#: The counter of this process (one process is one rank).
stats = CommStats()

_timeout = 60.0  # seconds; set by `init`, the default of every receive


# --- Process group ---------------------------------------------------------------------------


def init(backend: str | None = None, timeout: float = 60.0) -> tuple[int, int, torch.device]:
    """Join the default process group from the environment; returns ``(rank, world_size, device)``.

    Reads what ``torchrun`` (and `launch`) set: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
    MASTER_PORT. The backend defaults to nccl with one GPU per process (``cuda:LOCAL_RANK``) when
    CUDA is available, gloo on the CPU otherwise. `timeout` (seconds) bounds every collective and
    is the default timeout of every receive. Does nothing but report if already initialised.
    """
    global _timeout
    if timeout <= 0:
        raise ValueError(f"Invalid timeout: {timeout!r} (must be > 0)")
    if not dist.is_initialized():
        if backend is None:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout))
        _timeout = float(timeout)
    if dist.get_backend() == "nccl":
        device = torch.device("cuda", torch.cuda.current_device())
    else:
        device = torch.device("cpu")
    return dist.get_rank(), dist.get_world_size(), device


def shutdown() -> None:
    """Leave the process group (a no-op when there is none)."""
    if dist.is_initialized():
        dist.destroy_process_group()


# An address, not the name "localhost": in a network namespace without name resolution (the
# grading sandbox, some containers) "localhost" cannot be resolved and the rendezvous fails.
_LOCAL_HOST = "127.0.0.1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((_LOCAL_HOST, 0))
        return s.getsockname()[1]


@dataclass
class _Failure:
    """What a rank whose `fn` raised returns instead of raising (see `_entry`)."""

    rank: int
    time: float
    error: str
    traceback: str


def _entry(
    fn: Callable[..., Any], backend: str | None, timeout: float, args: tuple, kwargs: dict
) -> Any:
    """What each launched process runs: join the group, call `fn`, leave.

    An exception is returned, time-stamped, rather than raised: the launcher stops all ranks
    at the first failure it notices, which is often a peer's "connection reset" rather than
    the cause; with every rank's error and time in hand, `launch` can name the first.
    """
    torch.set_num_threads(1)  # as torchrun's OMP_NUM_THREADS=1: ranks share the cores
    rank = int(os.environ["RANK"])
    try:
        init(backend, timeout)
        return fn(*args, **kwargs)
    except Exception as error:
        return _Failure(
            rank, time.time(), f"{type(error).__name__}: {error}", traceback.format_exc()
        )
    finally:
        shutdown()


def launch(
    fn: Callable[..., Any],
    world_size: int,
    *args: Any,
    backend: str | None = None,
    timeout: float = 60.0,
    **kwargs: Any,
) -> list[Any]:
    """Run ``fn(*args, **kwargs)`` in `world_size` processes on this machine; one result per rank.

    This is torchrun's own launcher (``elastic_launch`` with a c10d rendezvous on a free local
    port, no restarts), so `fn` sees the environment torchrun gives and the default process
    group is already initialised (see `init`) when it starts. Processes are spawned: `fn`, its
    arguments and its result must pickle, and `fn` must be importable (defined at module level).

    Raises:
        RuntimeError: naming every rank that failed, with its error (or exit code or signal).
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if world_size < 1:
        raise ValueError(f"Invalid world_size: {world_size!r} (must be >= 1)")
    if timeout <= 0:
        raise ValueError(f"Invalid timeout: {timeout!r} (must be > 0)")
    # Spawning costs each rank an import of torch, seconds per launch (benchmarks/RESULTS.md,
    # distributed.py): cheap enough to keep torchrun's machinery rather than a launcher of ours.
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=world_size,
        run_id=uuid.uuid4().hex,
        rdzv_backend="c10d",
        rdzv_endpoint=f"{_LOCAL_HOST}:{_free_port()}",
        local_addr=_LOCAL_HOST,
        max_restarts=0,
        start_method="spawn",
        monitor_interval=0.1,  # notice a dead rank quickly
    )
    handlers = _signal_handlers()
    try:
        results = elastic_launch(config, _entry)(fn, backend, timeout, args, kwargs)
    except ChildFailedError as error:  # a rank died without a Python error (killed, exit code)
        raise RuntimeError(_death_report(error)) from None
    finally:
        _restore_signal_handlers(handlers)
    results = [results[rank] for rank in range(world_size)]
    failures = sorted((r for r in results if isinstance(r, _Failure)), key=lambda f: f.time)
    if failures:
        lines = [f"rank {f.rank} failed: {f.error}" for f in failures]
        raise RuntimeError(
            f"launch: {len(failures)} rank(s) failed, first to last\n  "
            + "\n  ".join(lines)
            + f"\nTraceback of rank {failures[0].rank}:\n{failures[0].traceback}"
        )
    return results


# torchrun's launcher installs handlers of these signals in the calling process (to stop its
# workers) and leaves them there: in a notebook's kernel a later interrupt or shutdown would then
# raise its SignalException (papermill printed that traceback at every kernel shutdown).
_SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT")


def _signal_handlers() -> dict[str, Any]:
    return {s: signal.getsignal(getattr(signal, s)) for s in _SIGNALS if hasattr(signal, s)}


def _restore_signal_handlers(handlers: dict[str, Any]) -> None:
    for name, handler in handlers.items():
        try:
            signal.signal(getattr(signal, name), handler)
        except (ValueError, TypeError):  # not the main thread, or a handler set outside Python
            pass


def _death_report(error: Any) -> str:
    """One line per rank the launcher saw die."""
    lines = []
    for rank, failure in sorted(error.failures.items()):
        if failure.exitcode < 0:
            how = f"killed by {failure.signal_name()}"
        else:
            how = f"exited with code {failure.exitcode}"
        lines.append(f"rank {rank} failed: {how}")
    return f"launch: {len(lines)} rank(s) died\n  " + "\n  ".join(lines)


# --- Point-to-point and collectives, with a byte count ---------------------------------------


def _nbytes(tensor: Tensor) -> int:
    return tensor.numel() * tensor.element_size()


def _failed(what: str, error: Exception) -> RuntimeError:
    rank = dist.get_rank() if dist.is_initialized() else "?"
    return RuntimeError(
        f"rank {rank}: {what} failed (a peer died, or did not arrive within the "
        f"{_timeout:g} s timeout): {error}"
    )


def all_reduce(tensor: Tensor, op: dist.ReduceOp.RedOpType = dist.ReduceOp.SUM) -> Tensor:
    """In-place all-reduce of `tensor` over all ranks (sum by default); returns it."""
    stats.bytes_sent += _nbytes(tensor)
    stats.bytes_received += _nbytes(tensor)
    stats.calls += 1
    try:
        dist.all_reduce(tensor, op=op)
    except RuntimeError as error:
        raise _failed(f"all_reduce of {_nbytes(tensor)} bytes", error) from error
    return tensor


def broadcast(tensor: Tensor, src: int) -> Tensor:
    """Copy `tensor` of rank `src` into `tensor` on every rank; returns it."""
    if dist.get_rank() == src:
        stats.bytes_sent += _nbytes(tensor)
    else:
        stats.bytes_received += _nbytes(tensor)
    stats.calls += 1
    try:
        dist.broadcast(tensor, src=src)
    except RuntimeError as error:
        raise _failed(f"broadcast from rank {src}", error) from error
    return tensor


class Request:
    """A pending `isend` or `irecv`; `wait` blocks at most `timeout` seconds."""

    def __init__(self, work: dist.Work, tensor: Tensor, peer: int | None, receive: bool) -> None:
        self._work, self._tensor, self._peer, self._receive = work, tensor, peer, receive

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for completion; returns the peer's rank (the sender's for a receive from any)."""
        timeout = _timeout if timeout is None else timeout
        peer = "any rank" if self._peer is None else f"rank {self._peer}"
        what = f"receive from {peer}" if self._receive else f"send to {peer}"
        try:
            self._work.wait(datetime.timedelta(seconds=timeout))
        except RuntimeError as error:
            raise RuntimeError(
                f"rank {dist.get_rank()}: {what} did not complete within {timeout:g} s "
                f"(is {peer} dead or stalled?): {error}"
            ) from error
        if self._receive:
            stats.bytes_received += _nbytes(self._tensor)
            if self._peer is None:
                self._peer = self._work._source_rank()
        return self._peer


def isend(tensor: Tensor, dst: int, group: dist.ProcessGroup | None = None) -> Request:
    """Start sending `tensor` to rank `dst` (counted as sent now), in `group` (default: all)."""
    stats.bytes_sent += _nbytes(tensor)
    stats.calls += 1
    return Request(dist.isend(tensor, dst=dst, group=group), tensor, dst, receive=False)


def irecv(
    tensor: Tensor, src: int | None = None, group: dist.ProcessGroup | None = None
) -> Request:
    """Start receiving into `tensor` from `src`; counted once waited on.

    ``src=None`` receives from any rank (gloo only; NCCL needs the sender's rank).
    """
    stats.calls += 1
    return Request(dist.irecv(tensor, src=src, group=group), tensor, src, receive=True)


def send(
    tensor: Tensor, dst: int, timeout: float | None = None, group: dist.ProcessGroup | None = None
) -> None:
    """Send `tensor` to rank `dst`, waiting at most `timeout` seconds (default: `init`'s)."""
    isend(tensor, dst, group).wait(timeout)


def recv(
    tensor: Tensor,
    src: int | None = None,
    timeout: float | None = None,
    group: dist.ProcessGroup | None = None,
) -> int:
    """Receive into `tensor` from `src` (any rank if None) within `timeout`; returns the sender."""
    sender = irecv(tensor, src, group).wait(timeout)
    assert sender is not None
    return sender


# --- Checkpoints -----------------------------------------------------------------------------


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _saved_steps(directory: Path, rank: int) -> list[int]:
    return sorted(int(f.stem.split("_step")[1]) for f in directory.glob(f"rank{rank}_step*.pt"))


def save_checkpoint(
    directory: str | os.PathLike, state: dict[str, Any], *, step: int, keep: int = 2
) -> Path:
    """Save this rank's `state` at `step` to ``directory/rank{r}_step{step}.pt``, atomically.

    The file is written under a temporary name and renamed, so a rank killed while saving
    leaves the previous checkpoint intact. Each rank keeps its `keep` latest files: ranks are
    at most one checkpoint apart in a synchronous run, so with two the newest step that every
    rank holds always survives a crash (`load_checkpoint` picks it).
    """
    if keep < 1:
        raise ValueError(f"Invalid keep: {keep!r} (must be >= 1)")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rank = _rank()
    path = directory / f"rank{rank}_step{step:08d}.pt"
    tmp = path.with_suffix(".tmp")
    torch.save({**state, "step": step}, tmp)
    os.replace(tmp, path)
    for old in _saved_steps(directory, rank)[:-keep]:
        (directory / f"rank{rank}_step{old:08d}.pt").unlink()
    return path


def load_checkpoint(
    directory: str | os.PathLike, map_location: str | torch.device | None = None
) -> dict[str, Any] | None:
    """This rank's state at the newest step saved by every rank, or None if there is none.

    With a process group this is collective (the ranks agree on the step), so every rank must
    call it. Loads with ``weights_only=True``: tensors, numbers, strings and containers only.
    """
    directory = Path(directory)
    rank = _rank()
    mine = _saved_steps(directory, rank) if directory.is_dir() else []
    everyone = [mine]
    if dist.is_initialized() and dist.get_world_size() > 1:
        # Bookkeeping, not the algorithm's traffic: deliberately not counted in `stats`.
        everyone = [None] * dist.get_world_size()
        dist.all_gather_object(everyone, mine)
    common = set(everyone[0]).intersection(*everyone[1:])
    if not common:
        if any(everyone):
            raise RuntimeError(
                f"No checkpoint step in {directory} is held by every rank: "
                f"{dict(enumerate(everyone))}"
            )
        return None
    path = directory / f"rank{rank}_step{max(common):08d}.pt"
    return torch.load(path, map_location=map_location, weights_only=True)
