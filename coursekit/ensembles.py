r"""Train K small models at once, with any element-wise optimizer, as K independent runs.

The lectures often need the same net trained from many starting points (the distribution of
final losses over initialisations, seed 000's Choromanska experiment). A Python loop over K
models pays torch's per-call overhead K times per step; here the K models become one:
`torch.func.stack_module_state` stacks each parameter of the K models into one leaf tensor
of shape ``(K, ...)``, and `torch.func.vmap` over `torch.func.functional_call` runs the
architecture on every slice in one batched call.

Why an ordinary optimizer on the stacked tensors performs K separate runs: the loss that is
differentiated is the *sum* over models of each model's own mean loss,

.. math::
    L(\theta_1, \dots, \theta_K) = \sum_{k=1}^K L_k(\theta_k)
    \quad\Longrightarrow\quad
    \frac{\partial L}{\partial \theta_k} = \nabla L_k(\theta_k),

since :math:`L_j` does not depend on :math:`\theta_k` for :math:`j \ne k`. So slice ``k`` of
every stacked gradient is model ``k``'s own gradient, and an optimizer whose update of each
coordinate uses only that coordinate's gradient and state, plus scalars shared by all models
(learning rate, step count), updates every slice exactly as it would update model ``k``
alone.

That holds for every optimizer in `coursekit.optim` (and the matching `torch.optim` ones): SGD
with momentum, dampening, Nesterov and weight decay, Rprop, Adagrad, RMSprop (centred too),
Adadelta, Adam, AdamW, AMSGrad, Adamax, and the textbook forms (SutskeverNesterov gets the
closure it needs: `train_ensemble` always passes one). Weight decay is element-wise too.
It does *not* hold for anything that couples the coordinates of one tensor or reads the total
loss: per-tensor norms (LARS and LAMB trust ratios, Adafactor's factored moments and RMS
clipping), matrix preconditioners (Shampoo, K-FAC), gradient clipping by a global norm (clip
each model's slice instead), line searches such as LBFGS's, and schedulers like
ReduceLROnPlateau fed the summed loss. A *mean* over models instead of the sum would divide
every gradient by K: SGD would take K times smaller steps.

Rounding: the batched kernels may add up the same products in another order than K separate
calls, so trajectories agree to rounding error: about 1e-15 relative in float64, a few units
in the last place per step in float32 (tests/test_ensembles.py). Buffers are passed to every forward call but must
not be updated by it (BatchNorm in training mode is not supported; use eval mode or
``track_running_stats=False``).

    models = [MLP([64, 25, 10], generator=torch.Generator().manual_seed(k)) for k in range(100)]
    ensemble = Ensemble(models)
    optimizer = SGD(ensemble.parameters(), lr=0.1, momentum=0.9)
    losses = train_ensemble(ensemble, optimizer, F.cross_entropy, x, y, steps=200)  # (200, 100)
    scores = evaluate(ensemble, x_test, y_test)  # scores.loss, scores.accuracy: (100,) each
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

__all__ = [
    "Ensemble",
    "Plateau",
    "Scores",
    "evaluate",
    "minibatches",
    "train_ensemble",
    "train_to_plateau",
]

LossFn = Callable[[Tensor, Tensor], Tensor]


def _mangle(name: str) -> str:
    # nn.Module forbids dots in a parameter's own name; "net.0.weight" is kept as "net__0__weight".
    return name.replace(".", "__")


def _assign(module: nn.Module, name: str, value: Tensor) -> None:
    """Replace the parameter or buffer called `name` (dotted) in `module` by `value`."""
    owner_name, _, leaf = name.rpartition(".")
    owner = module.get_submodule(owner_name)
    if leaf in owner._parameters:
        old = owner._parameters[leaf]
        owner._parameters[leaf] = nn.Parameter(value, requires_grad=old.requires_grad)
    else:
        owner._buffers[leaf] = value


class Ensemble(nn.Module):
    """K models of one architecture as one module whose parameters have a leading K dimension.

    Args:
        models: the models, all of the same class with the same parameter and buffer shapes;
            their current values become the stacked ones (the models themselves are not used
            afterwards).
        randomness: passed to `torch.func.vmap`: "error" (default) refuses random operations
            such as dropout; "different" or "same" draws per model or shared.

    `ensemble.parameters()` are ordinary leaf tensors of shape ``(K, ...)``, so
    ``SGD(ensemble.parameters(), ...)`` trains all K models; `params` and `stacked_buffers`
    map the models' own names (``"net.0.weight"``) to them. `.to(device)` moves them all.
    """

    def __init__(self, models: Sequence[nn.Module], *, randomness: str = "error") -> None:
        super().__init__()
        models = list(models)
        if not models:
            raise ValueError("Invalid models: [] (must hold at least one model)")
        first = models[0]
        signature = [(n, t.shape, t.dtype) for n, t in first.state_dict().items()]
        for m in models[1:]:
            if (
                type(m) is not type(first)
                or [(n, t.shape, t.dtype) for n, t in m.state_dict().items()] != signature
            ):
                raise ValueError(
                    f"Invalid models: a {type(m).__name__} differs from the first model "
                    "(must all share one class, parameter shapes and dtypes)"
                )
        params, buffers = stack_module_state(models)
        self._param_names = list(params)
        self._buffer_names = list(buffers)
        for name, value in params.items():
            frozen = not value.requires_grad  # a parameter frozen in the models stays frozen
            self.register_parameter(
                _mangle(name), nn.Parameter(value.detach().clone(), requires_grad=not frozen)
            )
        for name, value in buffers.items():
            self.register_buffer(_mangle(name), value.clone())
        self.k = len(models)
        self.randomness = randomness
        # A data-free copy that functional_call runs with each model's tensors. Kept out of
        # nn.Module's registry: its parameters must not show up in self.parameters().
        self.__dict__["_template"] = copy.deepcopy(first).to("meta")
        self._template.train(first.training)
        self.training = first.training

    def __len__(self) -> int:
        return self.k

    @property
    def params(self) -> dict[str, nn.Parameter]:
        """The stacked parameters, ``(K, ...)`` each, under the models' own names."""
        return {name: getattr(self, _mangle(name)) for name in self._param_names}

    @property
    def stacked_buffers(self) -> dict[str, Tensor]:
        """The stacked buffers under the models' own names (`buffers` is nn.Module's method)."""
        return {name: getattr(self, _mangle(name)) for name in self._buffer_names}

    def train(self, mode: bool = True) -> Ensemble:
        super().train(mode)
        self._template.train(mode)  # the template decides dropout's and batch norm's mode
        return self

    def _one(self, params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(self._template, (params, buffers), (x,))

    def forward(self, x: Tensor, per_model: bool = False) -> Tensor:
        """All K models on `x`: ``(N, ...)`` shared by all, or, with `per_model`, ``(K, N, ...)``
        where slice ``k`` goes to model ``k``. Returns ``(K, N, ...)``, model ``k``'s output
        in slice ``k``."""
        if per_model and x.shape[0] != self.k:
            raise ValueError(
                f"Invalid x: shape {tuple(x.shape)} (with per_model, the first dimension must "
                f"be the number of models, {self.k})"
            )
        run = vmap(self._one, in_dims=(0, 0, 0 if per_model else None), randomness=self.randomness)
        return run(self.params, self.stacked_buffers, x)

    def losses(self, loss_fn: LossFn, x: Tensor, y: Tensor, per_model: bool = False) -> Tensor:
        """Each model's loss ``loss_fn(model_k(x), y)``, shape ``(K,)``; `y` is per model
        (``(K, N, ...)``) exactly when `x` is. `loss_fn` must work under `vmap` (torch's
        functional losses do)."""
        prediction = self(x, per_model)  # (K, N, ...)
        return vmap(loss_fn, in_dims=(0, 0 if per_model else None))(prediction, y)

    def unstack(self) -> list[nn.Module]:
        """K independent modules holding copies of the current values, model ``k`` at index ``k``."""
        models = []
        for k in range(self.k):
            model = copy.deepcopy(self._template)  # on the meta device: every tensor is replaced
            for name, value in {**self.params, **self.stacked_buffers}.items():
                _assign(model, name, value[k].detach().clone())
            models.append(model.train(self.training))
        return models


def minibatches(
    n: int, batch_size: int, steps: int, *, seed: int = 0, k: int | None = None
) -> Iterator[Tensor]:
    """The sample indices of `steps` minibatches, drawn without replacement epoch by epoch.

    Each epoch is a fresh random permutation of ``range(n)`` cut into consecutive slices of
    `batch_size`; the last slice of an epoch may be shorter. Without `k` this is the order of
    `coursekit.training.train` for the same `seed`, and each batch is ``(B,)``; with `k`,
    every model has its own order and each batch is ``(k, B)``.
    """
    generator = torch.Generator().manual_seed(seed)
    done = 0
    while done < steps:
        if k is None:
            order = torch.randperm(n, generator=generator)  # (n,)
        else:
            order = torch.rand(k, n, generator=generator).argsort(dim=1)  # (k, n)
        for start in range(0, n, batch_size):
            if done == steps:
                return
            yield order[..., start : start + batch_size]
            done += 1


def _closure(
    ensemble: Ensemble,
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
    x: Tensor,
    y: Tensor,
    per_model: bool,
    record: list[Tensor],
) -> Callable[[], Tensor]:
    """The closure of one step: zero the gradients, back-propagate the summed loss."""

    def closure() -> Tensor:
        optimizer.zero_grad(set_to_none=True)
        per_model_loss = ensemble.losses(loss_fn, x, y, per_model)  # (K,)
        total = per_model_loss.sum()  # the sum, so each slice gets its own model's gradient
        total.backward()
        record.append(per_model_loss.detach())
        return total

    return closure


def train_ensemble(
    ensemble: Ensemble,
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
    x: Tensor,
    y: Tensor,
    *,
    steps: int,
    batch_size: int | None = None,
    independent_batches: bool = False,
    seed: int = 0,
) -> Tensor:
    """Take `steps` optimizer steps on all K models at once; returns the losses, ``(steps, K)``.

    `optimizer` is built on ``ensemble.parameters()`` like any other; see the module docstring
    for which optimizers this makes exact. `batch_size=None` is full-batch gradient descent;
    otherwise batches come from `minibatches` with `seed`, the same for every model, or with
    `independent_batches` a different order per model (no effect at full batch). The data
    are moved to the ensemble's device. Every step calls ``optimizer.step(closure)``; the loss
    recorded is the one the closure computed last in that step, before the update (for
    SutskeverNesterov: at the look-ahead point).
    """
    if steps < 1:
        raise ValueError(f"Invalid steps: {steps!r} (must be >= 1)")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"Invalid batch_size: {batch_size!r} (must be >= 1)")
    device = next(ensemble.parameters()).device
    x, y = x.to(device), y.to(device)
    batches = None
    if batch_size is not None:
        k = ensemble.k if independent_batches else None
        batches = minibatches(len(x), batch_size, steps, seed=seed, k=k)
    history = []
    for _ in range(steps):
        if batches is None:
            xb, yb, per_model = x, y, False
        else:
            idx = next(batches).to(device)  # (B,) or (K, B)
            xb, yb, per_model = x[idx], y[idx], idx.dim() == 2
        record: list[Tensor] = []
        optimizer.step(_closure(ensemble, optimizer, loss_fn, xb, yb, per_model, record))
        history.append(record[-1])
    return torch.stack(history).cpu()


@dataclass
class Plateau:
    """What `train_to_plateau` did to each model.

    Attributes:
        losses: the objective of every model before every update, ``(T, K)``; row ``t`` is
            at the parameters after ``t`` updates.
        stopped: ``(K,)``, the number of updates after which each model met the criterion
            (or ``max_steps``); the model holds those parameters.
        converged: ``(K,)`` bool, whether the criterion was met within ``max_steps``.
    """

    losses: Tensor
    stopped: Tensor
    converged: Tensor


def _penalty(ensemble: Ensemble) -> Tensor:
    """Each model's squared parameter norm, ``(K,)``."""
    params = [p for p in ensemble.parameters() if p.requires_grad]
    return sum(p.square().flatten(1).sum(1) for p in params)


def train_to_plateau(
    ensemble: Ensemble,
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
    x: Tensor,
    y: Tensor,
    *,
    rel_tol: float = 1e-3,
    window: int = 20,
    max_steps: int = 1000,
    weight_decay: float = 0.0,
) -> Plateau:
    r"""Full-batch training of all K models, each until its objective stops improving.

    Model ``k`` minimises :math:`J_k(\theta) = L_k(\theta) + \tfrac{\lambda}{2}
    \|\theta\|^2`, with :math:`L_k` its mean loss over all of `(x, y)` and
    :math:`\lambda` = `weight_decay` (the penalty makes minima exist at finite weights when
    a cross-entropy could otherwise keep falling forever on separable data). With
    :math:`J_k^{(t)}` the objective after ``t`` updates, model ``k`` is on a plateau at the
    first ``t >= window`` with

    .. math::
        J_k^{(t - w)} - J_k^{(t)} < \mathrm{rel\_tol} \cdot |J_k^{(t - w)}|,
        \qquad w = \mathrm{window},

    that is, the objective improved by less than a fraction `rel_tol` over the last `window`
    updates. The model is then returned with the parameters it had at that ``t``, exactly as
    a loop training it alone and stopping there would leave it (the ensemble keeps updating
    it while others train, and restores it at the end). Training stops when every model has
    met the criterion, or after `max_steps` updates.

    A plateau is not a proof of a minimum: the gradient may still be small but non-zero, and
    directions of small negative curvature may remain (`coursekit.curvature.smallest_eigenvalues`
    finds them). Each update is ``optimizer.step()`` without a closure, after one backward pass
    of the summed objectives (see the module docstring for the optimizers this keeps exact).
    """
    if isinstance(rel_tol, bool) or not isinstance(rel_tol, (int, float)) or not rel_tol > 0:
        raise ValueError(f"Invalid rel_tol: {rel_tol!r} (must be > 0)")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"Invalid window: {window!r} (must be an int >= 1)")
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"Invalid max_steps: {max_steps!r} (must be an int >= 1)")
    if (
        isinstance(weight_decay, bool)
        or not isinstance(weight_decay, (int, float))
        or not (0 <= weight_decay < float("inf"))
    ):
        raise ValueError(f"Invalid weight_decay: {weight_decay!r} (must be >= 0)")
    device = next(ensemble.parameters()).device
    x, y = x.to(device), y.to(device)
    params = [p for p in ensemble.parameters() if p.requires_grad]
    kept = [p.detach().clone() for p in params]  # each model's parameters where it stopped
    stopped = torch.full((ensemble.k,), -1, dtype=torch.long)
    history: list[Tensor] = []
    for t in range(max_steps + 1):
        optimizer.zero_grad(set_to_none=True)
        objective = ensemble.losses(loss_fn, x, y)  # (K,)
        if weight_decay:
            objective = objective + 0.5 * weight_decay * _penalty(ensemble)
        history.append(objective.detach().cpu())
        if t >= window:
            before, now = history[t - window], history[t]
            new = (stopped < 0) & (before - now < rel_tol * before.abs())
            if bool(new.any()):
                on_device = new.to(device)
                for saved, p in zip(kept, params):
                    saved[on_device] = p.detach()[on_device]
                stopped[new] = t
        if bool((stopped >= 0).all()) or t == max_steps:
            break
        objective.sum().backward()  # the sum: each model gets its own gradient
        optimizer.step()
    converged = stopped >= 0
    still = (~converged).to(device)
    with torch.no_grad():
        for saved, p in zip(kept, params):
            saved[still] = p.detach()[still]
            p.copy_(saved)
    stopped[~converged] = max_steps
    optimizer.zero_grad(set_to_none=True)
    return Plateau(torch.stack(history), stopped, converged)


@dataclass
class Scores:
    """Per-model results of `evaluate`: `loss` ``(K,)``; `accuracy` ``(K,)`` for integer class
    labels, None for float targets."""

    loss: Tensor
    accuracy: Tensor | None


@torch.no_grad()
def evaluate(
    ensemble: Ensemble,
    x: Tensor,
    y: Tensor,
    loss_fn: LossFn = F.cross_entropy,
    *,
    batch_size: int | None = None,
) -> Scores:
    """Every model's mean loss and (for class labels) accuracy on `(x, y)`, on CPU.

    `batch_size` bounds the memory: the data go through in chunks, and each chunk's mean loss
    is weighted by its size, which is exact for losses that average over samples.
    """
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"Invalid batch_size: {batch_size!r} (must be >= 1)")
    device = next(ensemble.parameters()).device
    n = len(x)
    batch_size = batch_size or n
    classes = not (y.is_floating_point() or y.is_complex())
    loss = torch.zeros(ensemble.k, dtype=torch.float64)
    correct = torch.zeros(ensemble.k, dtype=torch.float64)
    for start in range(0, n, batch_size):
        xb, yb = x[start : start + batch_size].to(device), y[start : start + batch_size].to(device)
        prediction = ensemble(xb)  # (K, B, ...)
        chunk_loss = vmap(loss_fn, in_dims=(0, None))(prediction, yb)
        loss += chunk_loss.double().cpu() * len(xb)
        if classes:
            correct += (prediction.argmax(-1) == yb).double().sum(1).cpu()
    return Scores(loss / n, correct / n if classes else None)
