r"""Asynchronous EASGD, EAMSGD and Downpour: a parameter server on rank 0, workers on the others.

Rank 0 holds the center variable :math:`\tilde x` (Downpour calls it :math:`x`); ranks
1..world_size-1 are the :math:`p` workers, each with its own :math:`x^i`. Worker :math:`i`
counts its local steps :math:`t^i = 0, 1, \dots` and, whenever :math:`\tau` divides
:math:`t^i`, talks to the server; it never waits for another worker (seed: Zhang, Choromanska,
LeCun 2015, arXiv:1412.6651, Algorithms 1-3).

**Asynchronous EASGD** (Algorithm 1), moving rate :math:`\alpha`. The worker sends
:math:`x^i`, the server replies with :math:`\tilde x`, and both move toward each other using
the same pair of values:

.. math::
    \text{a) } x^i \leftarrow x^i - \alpha (x^i - \tilde x), \qquad
    \text{b) } \tilde x \leftarrow \tilde x + \alpha (x^i - \tilde x)

then the local step :math:`x^i \leftarrow x^i - \eta\, g^i(x^i)`.

**EAMSGD** (Algorithm 2): the same exchange, then Nesterov momentum :math:`\delta` on the
worker, the gradient taken at the look-ahead point:

.. math::
    v^i \leftarrow \delta v^i - \eta\, g^i(x^i + \delta v^i), \qquad x^i \leftarrow x^i + v^i

**Downpour** (Algorithm 3). The worker accumulates its own steps in :math:`v^i` and pushes
them; the server adds them and sends its parameters back:

.. math::
    x \leftarrow x + v^i, \quad x^i \leftarrow x, \quad v^i \leftarrow 0; \qquad
    \text{then} \quad x^i \leftarrow x^i - \eta\, g^i(x^i), \quad v^i \leftarrow v^i - \eta\, g^i(x^i)

Protocol. A worker's request is a header ``[rank, kind, t]`` (three int64) followed, for an
exchange, by one flat vector of all its parameters (:math:`x^i`, or :math:`v^i` for Downpour);
the server answers with one flat vector (:math:`\tilde x`). The server receives headers from
*any* source, so it serves the workers in the order their requests arrive. After its last step
a worker sends a ``done`` header; the server returns when every worker is done. Every receive
has a timeout: a server whose worker died, or a worker whose server died, raises a
`RuntimeError` naming the silent rank instead of hanging.

Messages travel on CPU tensors through gloo, the torch.distributed backend that can receive
from any source; with nccl as the default backend a gloo group is made for them, and the
models stay on their device.

Bytes. Each rank counts the payload it sends and receives (``numel * element_size``), headers
included: an exchange moves ``24 + P`` bytes from worker to server and ``P`` bytes back, where
``P`` is the size of the parameters, and a ``done`` header moves 24 bytes.

Run ``run_async`` on every rank, e.g. from `coursekit.distributed.runtime.launch` or torchrun.
Ranks return at different times (a worker as soon as its ``done`` is sent), so separate two
calls in the same process group by a ``dist.barrier()``: otherwise a fast worker's first
request of the next run could reach the server while it still serves this one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import torch
import torch.distributed as dist
from torch import Tensor, nn

from coursekit.distributed import runtime

__all__ = ["ALGORITHMS", "run_async"]

ALGORITHMS = ("async_easgd", "eamsgd", "downpour")

_EXCHANGE, _DONE = 0, 1
_HEADER = 3  # [rank, kind, local steps done]

LossFn = Callable[[Tensor, Tensor], Tensor]


def run_async(
    algorithm: str,
    model: nn.Module,
    loss_fn: LossFn,
    batches: Iterable[tuple[Tensor, Tensor]] | None,
    *,
    steps: int,
    lr: float,
    tau: int = 1,
    alpha: float | None = None,
    momentum: float = 0.0,
    eval_fn: Callable[[nn.Module], float] | None = None,
    eval_every: int = 1,
    timeout: float = 60.0,
) -> dict[str, list]:
    r"""Run one rank of asynchronous EASGD, EAMSGD or Downpour; call it on every rank.

    Rank 0 becomes the parameter server: `model` starts as the center :math:`\tilde x` and
    holds it on return (all ranks must start from the same parameters). The other ranks are
    workers: each makes `steps` local steps on the `(x, y)` minibatches of its own `batches`.

    Args:
        algorithm: ``"async_easgd"``, ``"eamsgd"`` or ``"downpour"`` (see the module docstring).
        model: the worker's :math:`x^i`, or the server's center; parameters share one dtype.
        loss_fn: ``loss_fn(model(x), y)``, a scalar.
        batches: the worker's minibatches, at least `steps` of them; ignored on rank 0.
        steps: local steps per worker (>= 1).
        lr: :math:`\eta` (> 0).
        tau: communication period :math:`\tau` (>= 1): exchange when :math:`\tau \mid t^i`.
        alpha: moving rate :math:`\alpha \in (0, 1]`, EASGD and EAMSGD only.
        momentum: :math:`\delta \in [0, 1)`, EAMSGD only.
        eval_fn: ``eval_fn(model) -> float`` (e.g. a test error), evaluated on the server's
            center at the start, every `eval_every` exchanges and at the end.
        eval_every: exchanges between two evaluations on the server (>= 1).
        timeout: seconds any rank waits for a message before raising `RuntimeError` (> 0).
            The server gives each worker this long between two of its requests.

    Returns:
        Lists of equal length, one entry per record: ``step`` (on a worker its local steps
        done; on the server the steps done by all workers, as last reported), ``time``
        (seconds since the call), ``train_loss`` (the worker's minibatch loss, at the
        look-ahead point for EAMSGD; NaN on the server), ``test_error`` (``eval_fn`` of the
        center on the server at the start, every `eval_every` exchanges and at the end; NaN on
        workers), ``bytes_sent`` and ``bytes_received`` (cumulative payload, headers included).
        A worker records after every local step.
    """
    _check_arguments(algorithm, steps, lr, tau, alpha, momentum, eval_every, timeout)
    if dist.get_world_size() < 2:
        raise ValueError(
            f"Invalid world size: {dist.get_world_size()} (must be >= 2: a "
            "server and at least one worker)"
        )
    # gloo receives from any source; nccl cannot, so messages go through a gloo group there.
    group = None if "gloo" in dist.get_backend() else dist.new_group(backend="gloo")
    link = _Link(group, timeout)
    if dist.get_rank() == 0:
        return _serve(algorithm, model, alpha, eval_fn, eval_every, link)
    if batches is None:
        raise ValueError("Invalid batches: None (workers need minibatches)")
    return _work(algorithm, model, loss_fn, batches, steps, lr, tau, alpha, momentum, link)


def _check_arguments(algorithm, steps, lr, tau, alpha, momentum, eval_every, timeout) -> None:
    def check(condition: bool, name: str, value, requirement: str) -> None:
        if not condition:
            raise ValueError(f"Invalid {name}: {value!r} (must be {requirement})")

    check(algorithm in ALGORITHMS, "algorithm", algorithm, f"one of {ALGORITHMS}")
    check(steps >= 1, "steps", steps, ">= 1")
    check(lr > 0.0, "lr", lr, "> 0")
    check(tau >= 1, "tau", tau, ">= 1")
    if algorithm == "downpour":
        check(alpha is None, "alpha", alpha, "None for downpour")
    else:
        check(
            alpha is not None and 0.0 < alpha <= 1.0, "alpha", alpha, f"in (0, 1] for {algorithm}"
        )
    if algorithm == "eamsgd":
        check(0.0 <= momentum < 1.0, "momentum", momentum, "in [0, 1)")
    else:
        check(momentum == 0.0, "momentum", momentum, f"0 for {algorithm}")
    check(eval_every >= 1, "eval_every", eval_every, ">= 1")
    check(timeout > 0.0, "timeout", timeout, "> 0")


class _Link:
    """This run's messages: `runtime.send` and `runtime.recv` in one group, with one timeout.

    Counts the payload of this run only (`runtime.stats` counts the whole process).
    """

    def __init__(self, group: dist.ProcessGroup | None, timeout: float) -> None:
        self.group, self.timeout = group, timeout
        self.rank = dist.get_rank()
        self._sent0, self._received0 = runtime.stats.bytes_sent, runtime.stats.bytes_received

    @property
    def sent(self) -> int:
        return runtime.stats.bytes_sent - self._sent0

    @property
    def received(self) -> int:
        return runtime.stats.bytes_received - self._received0

    def send(self, tensor: Tensor, dst: int) -> None:
        runtime.send(tensor, dst, self.timeout, group=self.group)

    def recv(self, tensor: Tensor, src: int | None, timeout: float | None = None) -> int:
        """Receive into `tensor` from `src` (None: from any rank); returns the sender."""
        return runtime.recv(
            tensor, src, self.timeout if timeout is None else timeout, group=self.group
        )


def _serve(algorithm, model, alpha, eval_fn, eval_every, link: _Link) -> dict[str, list]:
    """Rank 0: answer requests in arrival order until every worker is done."""
    start = time.perf_counter()
    params = [p for p in model.parameters()]
    center = _flatten(params).cpu()
    received = torch.empty_like(center)
    header = torch.zeros(_HEADER, dtype=torch.int64)
    workers = range(1, dist.get_world_size())
    steps_done = {r: 0 for r in workers}
    last_heard = {r: time.monotonic() for r in workers}
    history = _history()

    def record() -> None:
        error = float("nan")
        if eval_fn is not None:
            _assign(params, center)
            error = float(eval_fn(model))
        _append(history, sum(steps_done.values()), start, float("nan"), error, link)

    record()
    exchanges = 0
    while last_heard:
        # Wait for whoever speaks first, but no longer than the quietest worker may stay quiet.
        quiet = min(last_heard, key=last_heard.get)
        left = last_heard[quiet] + link.timeout - time.monotonic()
        silent = sorted(r for r in last_heard if last_heard[r] == last_heard[quiet])
        try:
            link.recv(header, None, timeout=max(left, 1e-3))
        except RuntimeError as error:
            raise RuntimeError(
                f"rank 0: no request from worker rank(s) {silent} within "
                f"timeout={link.timeout:g} s; have they died? ({error})"
            ) from error
        src, kind, t = header.tolist()
        last_heard[src] = time.monotonic()
        steps_done[src] = t
        if kind == _DONE:
            del last_heard[src]
            continue
        link.recv(received, src)
        if algorithm == "downpour":
            center.add_(received)  # x <- x + v^i, then x^i <- x
        link.send(center, src)
        if algorithm != "downpour":
            center.add_(received - center, alpha=alpha)  # b) with the center just sent
        exchanges += 1
        if exchanges % eval_every == 0:
            record()
        late = sorted(r for r in last_heard if time.monotonic() - last_heard[r] > link.timeout)
        if late:
            raise RuntimeError(
                f"rank 0: worker rank(s) {late} sent nothing within "
                f"timeout={link.timeout:g} s; have they died?"
            )
    record()  # the final center, after the last local steps were reported
    _assign(params, center)
    return history


def _work(
    algorithm, model, loss_fn, batches, steps, lr, tau, alpha, momentum, link: _Link
) -> dict[str, list]:
    """A worker: `steps` local steps, talking to rank 0 whenever tau divides t."""
    start = time.perf_counter()
    params = [p for p in model.parameters()]
    velocity = [torch.zeros_like(p) for p in params]  # v^i: momentum, or Downpour's push
    reply = torch.empty_like(_flatten(params).cpu())
    history = _history()
    done = 0
    for t, (x, y) in zip(range(steps), batches):  # range first: no batch drawn beyond steps
        if t % tau == 0:
            link.send(torch.tensor([link.rank, _EXCHANGE, t]), 0)
            payload = velocity if algorithm == "downpour" else params
            link.send(_flatten(payload).cpu(), 0)
            link.recv(reply, 0)
            with torch.no_grad():
                mine = _flatten(params)
                center = reply.to(mine.device)
                if algorithm == "downpour":
                    _assign(params, center)  # x^i <- x
                    for v in velocity:
                        v.zero_()
                else:
                    _assign(params, mine - alpha * (mine - center))  # a)
        loss = _local_step(algorithm, model, loss_fn, x, y, params, velocity, lr, momentum)
        done = t + 1
        _append(history, done, start, loss, float("nan"), link)
    if done < steps:
        raise ValueError(f"Invalid batches: only {done} minibatches for steps={steps}")
    link.send(torch.tensor([link.rank, _DONE, done]), 0)
    history["bytes_sent"][-1] = link.sent  # so that the totals include the done header
    return history


def _local_step(algorithm, model, loss_fn, x, y, params, velocity, lr, momentum) -> float:
    """One step of worker i on the minibatch (x, y); returns the minibatch loss."""
    if algorithm == "eamsgd":
        with torch.no_grad():
            saved = [p.clone() for p in params]
            for p, v in zip(params, velocity):
                p.add_(v, alpha=momentum)  # the look-ahead point x + delta v
    loss = _gradient(model, loss_fn, x, y, params)
    with torch.no_grad():
        for i, p in enumerate(params):
            g = p.grad
            if algorithm == "eamsgd":
                v = velocity[i]
                v.mul_(momentum).sub_(g, alpha=lr)  # v <- delta v - eta g(x + delta v)
                p.copy_(saved[i]).add_(v)  # x <- x + v
            else:
                p.sub_(g, alpha=lr)  # x <- x - eta g(x)
                if algorithm == "downpour":
                    velocity[i].sub_(g, alpha=lr)  # v <- v - eta g(x)
    return loss


def _gradient(model, loss_fn, x, y, params) -> float:
    for p in params:
        p.grad = None
    device = params[0].device
    loss = loss_fn(model(x.to(device)), y.to(device))
    loss.backward()
    for p in params:  # a parameter the loss does not use has a zero gradient
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    return float(loss.detach())


def _flatten(tensors: list[Tensor]) -> Tensor:
    return torch.cat([t.detach().reshape(-1) for t in tensors])


@torch.no_grad()
def _assign(params: list[Tensor], flat: Tensor) -> None:
    for p, chunk in zip(params, flat.split([p.numel() for p in params])):
        p.copy_(chunk.view_as(p))


def _history() -> dict[str, list]:
    keys = ("step", "time", "train_loss", "test_error", "bytes_sent", "bytes_received")
    return {key: [] for key in keys}


def _append(history, step: int, start: float, loss: float, error: float, link: _Link) -> None:
    history["step"].append(step)
    history["time"].append(time.perf_counter() - start)
    history["train_loss"].append(loss)
    history["test_error"].append(error)
    history["bytes_sent"].append(link.sent)
    history["bytes_received"].append(link.received)
