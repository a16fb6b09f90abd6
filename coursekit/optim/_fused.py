r"""`fused=True`: the readable per-tensor update, compiled by Inductor into one kernel per step.

Every algorithm's file has a per-tensor loop, `_single_tensor_adam(params, grads, ...)`, that
calls the update written like its equations (`adam_update`) once per parameter. `fuse` hands
that same loop to `torch.compile`: Dynamo unrolls it over the parameter list and Inductor fuses
the element-wise work of all tensors into one generated kernel (one C++ function with a single
OpenMP region on CPU, Triton kernels on CUDA), which reads and writes each number once per
step, the memory-bandwidth limit. There is no second, hand-written copy of the algorithm.

What the compiled step is keyed on (Dynamo's guards): the number, shapes, dtypes and devices of
the tensors, and the hyper-parameters other than the learning rate. The learning rate enters as
a 0-d float64 tensor, so a scheduler that changes it every step reuses the same compiled step;
changing another hyper-parameter (betas, momentum) compiles a new one. Two optimizers with the
same signature (the two groups of a model with equal layers, or a fresh optimizer after
`load_state_dict`) share one compiled step, because the cache belongs to the loop function, not
to the optimizer. Inductor also keeps its generated code on disk, so a second process compiles
faster than the first. Dynamo keeps at most `torch._dynamo.config.recompile_limit` (8) compiled
steps per loop function in a process (Adam and AdamW share one loop).

Step-dependent scalars (Adam's bias corrections) are 0-d tensors computed inside the graph, not
`.item()` values, which would split the graph at every parameter; see `_base._power` for why
they are written with `exp`.

When does it pay? The fused step saves the foreach path's separate passes over memory and runs
about as fast as torch's own fused step where torch has one, but compiling it takes tens of
seconds the first time (Dynamo unrolls the loop over every parameter tensor; Inductor's
scheduling and the C++ compiler dominate). It breaks even after hundreds to thousands of steps
(`benchmarks/optim_step.py`; figures in `benchmarks/RESULTS.md`): worth it for a training run,
not for a notebook cell of fifty steps. That is why the default stays `fused=None` (the foreach
path).

Where compilation is unavailable (no C++ compiler for CPU tensors, no Triton for CUDA tensors,
another device), `fused=True` warns and runs the per-tensor loop uncompiled: same numbers, no
speed-up. The same happens when compilation fails or the recompile limit is reached; both are
detected before the step has touched a tensor.
"""

from __future__ import annotations

import functools
import os
import shutil
import warnings
from collections.abc import Callable

import torch
from torch import Tensor
from torch._dynamo.exc import BackendCompilerFailed, FailOnRecompileLimitHit

__all__: list[str] = []


def compiler_available(device: torch.device) -> str | None:
    """None when Inductor can compile for `device`; otherwise the reason it cannot."""
    return _compiler_available(device.type)


@functools.cache  # a search of PATH on every step would cost more than some whole steps
def _compiler_available(device_type: str) -> str | None:
    if device_type == "cpu":
        compilers = [os.environ.get("CXX", ""), "g++", "c++", "clang++"]
        if not any(c and shutil.which(c) for c in compilers):
            return "no C++ compiler found (set CXX or install g++)"
        return None
    if device_type == "cuda":
        from torch.utils._triton import has_triton

        return None if has_triton() else "Triton is not installed"
    return f"torch.compile has no fused kernels for device {device_type!r} here"


def check_flags(foreach: bool | None, fused: bool | None) -> None:
    """Reject `foreach=True` with `fused=True`: the two name different implementations."""
    if foreach and fused:
        raise ValueError("fused=True and foreach=True cannot be used together (choose one path)")


def fuse(loop: Callable[..., None]) -> Callable[..., None]:
    """The fused form of a per-tensor loop `loop(*tensor_lists, **hyper)` (same signature).

    The compiled step is created lazily by `torch.compile` and cached with `loop`'s code, so it
    is shared by every optimizer that calls the same loop with the same signature.
    """
    # Inductor asserts the size and stride of every input at every call by default; Dynamo's
    # guards have checked them already, and on a step over 500 tensors the asserts cost more
    # than the rest of the Python work of the step (measured with cProfile).
    compiled = torch.compile(loop, fullgraph=True, dynamic=False, options={"size_asserts": False})

    @functools.wraps(loop)
    def fused_loop(*tensor_lists: list[Tensor], **hyper) -> None:
        reason = compiler_available(tensor_lists[0][0].device)
        if reason is not None:
            warnings.warn(
                f"fused=True: {reason}; running the unfused per-tensor update instead", stacklevel=4
            )
            return loop(*tensor_lists, **hyper)
        if "lr" in hyper:
            # A 0-d tensor is a graph input (a Python float would be baked into the kernel and
            # guarded on, so every scheduler step would compile anew).
            hyper["lr"] = torch.as_tensor(hyper["lr"], dtype=torch.float64)
        try:
            compiled(*tensor_lists, **hyper)
        except (FailOnRecompileLimitHit, BackendCompilerFailed) as error:
            # Both are raised before the compiled step runs, so no tensor was updated yet.
            warnings.warn(
                f"fused=True: compilation failed ({type(error).__name__}: "
                f"{str(error).splitlines()[0]}); running the unfused per-tensor "
                "update instead",
                stacklevel=4,
            )
            loop(*tensor_lists, **hyper)

    return fused_loop
