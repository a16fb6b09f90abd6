"""What every coursekit optimizer shares: argument checks, the `step` loop, tensor grouping.

torch.optim repeats the same `step` loop (skip parameters without a gradient, create state
lazily, gather lists, call the functional update) in every file. Here it is written once, so
that each algorithm's file holds only what is particular to it: its arguments, its state and
its update rule.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

__all__: list[str] = []


def _check(condition: bool, name: str, value: Any, requirement: str) -> None:
    """Raise ValueError naming the hyper-parameter when `condition` is false."""
    if not condition:
        raise ValueError(f"Invalid {name}: {value!r} (must be {requirement})")


def _check_lr(lr: float) -> None:
    _check(lr >= 0.0, "lr", lr, ">= 0")


def _check_eps(eps: float) -> None:
    _check(eps >= 0.0, "eps", eps, ">= 0")


def _check_weight_decay(weight_decay: float) -> None:
    _check(weight_decay >= 0.0, "weight_decay", weight_decay, ">= 0")


def _check_beta(name: str, beta: float) -> None:
    _check(0.0 <= beta < 1.0, name, beta, "in [0, 1)")


def _new_step(param: Tensor | None = None, group: dict[str, Any] | None = None) -> Tensor:
    """A step counter stored as a 0-d tensor, as torch.optim stores it.

    Keeping torch's representation (and torch's state key names) means a state_dict saved by
    a coursekit optimizer loads into the matching torch.optim optimizer and back. Like torch,
    a fused optimizer keeps the counter on the parameter's device, so the compiled step reads it
    there (`Optimizer.load_state_dict` moves it there too when the group says `fused`).
    """
    dtype = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
    device = param.device if param is not None and group and group.get("fused") else None
    return torch.zeros((), dtype=dtype, device=device)


def _increment(steps: list[Tensor]) -> None:
    """Add one to every step counter in a single foreach call.

    A plain Python 1 would be wrapped into a new CPU tensor once per counter; one shared tensor
    keeps the increment a single cheap call (torch.optim does the same).
    """
    torch._foreach_add_(steps, torch.tensor(1.0), alpha=1.0)


def _step_count(step: Tensor) -> float | Tensor:
    """The step counter as a number to compute with, without breaking a compiled graph.

    Eagerly, a Python float (cheap, and exact like torch's own arithmetic); under
    `torch.compile` (`fused=True`) a 0-d float64 tensor, because `.item()` would split the
    compiled step at every parameter.
    """
    return step.double() if torch.compiler.is_compiling() else step.item()


def _power(base: float, step: Tensor) -> float | Tensor:
    """`base ** step` for a step counter (a float eagerly, a 0-d tensor when compiled).

    Compiled, it is written as exp(step log(base)): Inductor computes a broadcast scalar that
    contains an `exp` once per tensor, but inlines a `pow` into the element loop and repeats it
    for every vector of 16 elements (figures in `benchmarks/RESULTS.md`, `optim_step.py`).
    """
    if torch.compiler.is_compiling():
        return torch.exp(step.double() * math.log(base))
    return base ** step.item()


def _use_foreach(foreach: bool | None) -> bool:
    """`foreach=None` means: take the fast multi-tensor path."""
    return True if foreach is None else bool(foreach)


def _choose(
    foreach: bool | None,
    fused: bool | None,
    single: Callable,
    multi: Callable,
    fused_impl: Callable,
) -> Callable:
    """The implementation the flags ask for: fused, else foreach unless `foreach=False`."""
    if fused:
        return fused_impl
    return multi if _use_foreach(foreach) else single


def _group_by_device_and_dtype(*tensor_lists: list[Tensor]) -> list[tuple[list[Tensor], ...]]:
    """Split parallel lists so that each part holds tensors of one device and dtype.

    `torch._foreach_*` kernels need their list arguments on one device with one dtype.
    """
    groups: dict[tuple[torch.device, torch.dtype], list[int]] = defaultdict(list)
    for i, p in enumerate(tensor_lists[0]):
        groups[(p.device, p.dtype)].append(i)
    return [tuple([lst[i] for i in idx] for lst in tensor_lists) for idx in groups.values()]


class _ReferenceOptimizer(Optimizer):
    """A torch.optim.Optimizer whose `step` gathers the work and hands it to `_update`.

    Subclasses define `_init_state(param, group) -> dict` (the per-parameter state, created
    the first time the parameter has a gradient) and
    `_update(group, params, grads, states)`, which calls the algorithm's functional form.
    """

    def _init_state(self, param: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def _update(
        self,
        group: dict[str, Any],
        params: list[Tensor],
        grads: list[Tensor],
        states: list[dict[str, Any]],
    ) -> None:
        raise NotImplementedError

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A state_dict saved by torch.optim (or by an older coursekit) may lack these flags.
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("foreach", None)
            group.setdefault("fused", None)

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        """Perform one optimisation step; `closure` re-evaluates the model and returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params, grads, states = [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
                state = self.state[p]
                if len(state) == 0:
                    state.update(self._init_state(p, group))
                params.append(p)
                grads.append(p.grad)
                states.append(state)
            if params:
                self._update(group, params, grads, states)
        return loss
