"""Checking a student's optimizer against coursekit.optim, step for step.

The same fixed problem runs in two places:

* in the student's kernel, where `check_optimizer` (visible tests: compare and explain) and
  `record_optimizer` (hidden tests: run every case and record the trajectories) call the
  student's class;
* in the grader's own process, where `grade_optimizer` reruns every case with the reference
  class and compares the recorded trajectories with its own.

The problem: three parameters (one never gets a gradient and must not move), a smooth loss
plus fixed per-step noise so that gradients change sign as in minibatch training, 20 steps.
Each case runs in four variants: float64, float32, two param groups (the second at half the
learning rate) and a `state_dict` resume halfway; plus float32 on CUDA when there is a GPU.

Which optimizers and hyper-parameters an assignment checks is an `OptimizerTask`, registered by
the assignment's module (``coursekit.grading.tasks.ps2``: ``"ps2.adam"``, ...).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from . import registry
from .verdict import Verdict

STEPS = 20
HIDDEN = ("torch.optim.*", "coursekit.optim")  # while graded, the kernel cannot delegate to these
RESUME_AT = 10
SEED = 20261123


@dataclass(frozen=True)
class OptimizerTask:
    """An optimizer a student writes, checked against ``coursekit.optim`` on every case.

    Attributes:
        cases: (name of the reference class in ``coursekit.optim``, hyper-parameters) for each
            case; every case sets ``lr`` explicitly, which the "two param groups" variant halves
            in its second group, unless `second_group` says what to change instead.
        hidden: modules the student's kernel may not import while it is graded.
    """

    cases: Sequence[tuple[str, dict]]
    hidden: tuple[str, ...] = HIDDEN
    second_group: Callable[[dict], dict] | None = None  # hyper -> the second group's overrides


def task(key: str) -> OptimizerTask:
    """The optimizer task `key` (KeyError if there is none, or it is not an optimizer task)."""
    found = registry.task(key)
    if not isinstance(found, OptimizerTask):
        raise KeyError(f"{key!r} is not an optimizer task")
    return found


VARIANTS = ("float64", "float32", "groups", "resume")
_LABELS = {
    "float64": "float64",
    "float32": "float32",
    "groups": "two param groups",
    "resume": "state_dict resume",
    "cuda": "float32 on CUDA",
}
# float32 steps are compared to float32 reference steps, so the tolerance covers rounding in a
# different but correct order of operations, not a different algorithm.
_TOLERANCE = {torch.float64: (1e-7, 1e-9), torch.float32: (1e-4, 1e-5)}


def variants() -> tuple[str, ...]:
    """The variants every case runs in on this machine."""
    return VARIANTS + (("cuda",) if torch.cuda.is_available() else ())


def describe(reference: str, hyper: dict) -> str:
    """``Adam(lr=0.01, amsgrad=True)``: how a case is named in messages."""
    return f"{reference}({', '.join(f'{k}={v!r}' for k, v in hyper.items())})"


def _problem(dtype: torch.dtype, device: str) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Initial parameters and the per-step gradient noise, identical wherever it runs."""
    g = torch.Generator().manual_seed(SEED)
    shapes = [(4, 3), (3,), (2,)]
    params = [torch.randn(s, generator=g, dtype=torch.float64) for s in shapes]
    noise = 0.3 * torch.randn(STEPS, 4 * 3 + 3, generator=g, dtype=torch.float64)
    return [p.to(dtype=dtype, device=device) for p in params], noise.to(dtype=dtype, device=device)


def _gradients(params: list[torch.Tensor], noise: torch.Tensor) -> list[torch.Tensor]:
    """Gradient of a smooth non-quadratic loss plus this step's noise; the third gets none."""
    w, b, _ = params
    with torch.enable_grad():
        w_, b_ = w.detach().requires_grad_(), b.detach().requires_grad_()
        loss = (w_ - 0.5).pow(2).sum() + 0.1 * torch.sin(3 * w_).sum() + (b_ + 0.2).pow(4).sum()
        gw, gb = torch.autograd.grad(loss, (w_, b_))
    return [gw + noise[:12].view(4, 3), gb + noise[12:]]


def trajectory(
    optimizer_class: Callable[..., torch.optim.Optimizer],
    hyper: dict,
    variant: str = "float64",
    steps: int = STEPS,
    second_group: dict | None = None,
) -> torch.Tensor:
    """All parameters, flattened, after each of `steps` steps: a (steps, 17) tensor.

    `variant` is one of `variants()`. For "groups" the second parameter group overrides
    `second_group` (default: half the learning rate). For "resume" a second optimizer is built
    halfway from the first one's `state_dict` on copies of the parameters, as when a run
    restarts.
    """
    dtype = torch.float32 if variant in ("float32", "cuda") else torch.float64
    device = "cuda" if variant == "cuda" else "cpu"
    params, noise = _problem(dtype, device)
    params = [torch.nn.Parameter(p) for p in params]

    def build(ps: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
        if variant == "groups":
            overrides = second_group if second_group is not None else {"lr": hyper["lr"] * 0.5}
            groups = [{"params": [ps[0], ps[2]]}, {"params": [ps[1]], **overrides}]
            return optimizer_class(groups, **hyper)
        return optimizer_class(ps, **hyper)

    optimizer = build(params)
    rows = []
    for t in range(steps):
        if variant == "resume" and t == RESUME_AT:
            state = optimizer.state_dict()
            params = [torch.nn.Parameter(p.detach().clone()) for p in params]
            optimizer = build(params)
            optimizer.load_state_dict(state)
        for p, g in zip(params, _gradients(params, noise[t]) + [None]):
            p.grad = g
        optimizer.step()
        rows.append(torch.cat([p.detach().flatten() for p in params]).clone())
    return torch.stack(rows)


def _reference(name: str) -> type[torch.optim.Optimizer]:
    import coursekit.optim

    return getattr(coursekit.optim, name)


@functools.cache
def _expected(key: str, case: int, variant: str) -> torch.Tensor:
    """The reference trajectory of one case, computed once per grading process."""
    reference, hyper = task(key).cases[case]
    return trajectory(_reference(reference), hyper, variant, second_group=_second(key, hyper))


def _second(key: str, hyper: dict) -> dict | None:
    rule = task(key).second_group
    return rule(hyper) if rule is not None else None


def _first_difference(actual: torch.Tensor, expected: torch.Tensor) -> str | None:
    """None if equal within tolerance, else a sentence a student can act on."""
    if actual.shape != expected.shape:
        return f"parameters have shape {tuple(actual.shape)}, expected {tuple(expected.shape)}"
    if actual.dtype != expected.dtype:
        return f"parameters became {actual.dtype}, expected {expected.dtype}: update them in place"
    rtol, atol = _TOLERANCE[expected.dtype]
    bad = ~torch.isclose(actual, expected, rtol=rtol, atol=atol)
    if not bad.any():
        return None
    step = int(bad.any(dim=1).nonzero()[0])
    error = (actual[step] - expected[step]).abs().nan_to_num(float("inf")).max().item()
    hint = ""
    if step == 0 and torch.equal(actual[0, -2:], expected[0, -2:]) and bad[0, :-2].all():
        hint = " (is the very first update right?)"
    if bad[:, -2:].any():
        hint = " (a parameter whose .grad is None must not change)"
    return (
        f"differs from the reference after step {step + 1} (largest difference {error:.2g}){hint}"
    )


def check_optimizer(
    optimizer_class: Callable[..., torch.optim.Optimizer], reference: str, **hyper
) -> None:
    """Visible test: compare with ``coursekit.optim.<reference>`` for 20 float64 steps.

    Raises AssertionError saying where the two first differ; prints a check mark otherwise.
    """
    name = describe(reference, hyper)
    try:
        actual = trajectory(optimizer_class, hyper)
    except NotImplementedError:
        raise AssertionError(f"{name}: not implemented yet") from None
    problem = _first_difference(actual, trajectory(_reference(reference), hyper))
    if problem:
        raise AssertionError(f"{name} {problem}")
    print(f"\u2713 {name} matches coursekit.optim.{reference} over {STEPS} steps")


def record_optimizer(key: str, optimizer_class: Callable[..., torch.optim.Optimizer]) -> None:
    """Hidden test: run every case of task `key` in every variant and record the results.

    It must come first in a test cell: while grading, ``coursekit.optim`` is hidden, so the
    visible `check_optimizer` calls after it raise (the grader ignores that).
    """
    from .records import emit

    tensors, errors = {}, {}
    for i, (_, hyper) in enumerate(task(key).cases):
        for variant in variants():
            try:
                tensors[f"{i}/{variant}"] = trajectory(
                    optimizer_class, hyper, variant, second_group=_second(key, hyper)
                )
            except Exception as e:  # the student's error, reported back to them
                errors[f"{i}/{variant}"] = (
                    f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
                )
    emit("optimizer", key, tensors, errors)


def grade_optimizer(key: str, tensors: dict[str, torch.Tensor], errors: dict[str, str]) -> Verdict:
    """Grader side: compare recorded trajectories with the reference's, in this process."""
    passed, total, lines = 0, 0, []
    for i, (reference, hyper) in enumerate(task(key).cases):
        name, good, bad = describe(reference, hyper), [], []
        for variant in variants():
            total += 1
            label = _LABELS[variant]
            got = tensors.get(f"{i}/{variant}")
            if got is None:
                error = errors.get(f"{i}/{variant}")
                bad.append(f"{label}: raised {error}" if error else f"{label}: no result recorded")
                continue
            problem = _first_difference(got, _expected(key, i, variant))
            if problem:
                bad.append(f"{label}: {problem}")
            else:
                good.append(label)
                passed += 1
        if good:
            lines.append(f"\u2713 {name}: {', '.join(good)}")
            lines += [f"\u2717 {name}, {b}" for b in bad]
        else:  # failing everywhere: the first reason is the one to read
            more = f" (and in {len(bad) - 1} more variants)" if len(bad) > 1 else ""
            lines.append(f"\u2717 {name}, {bad[0]}{more}")
    return Verdict(passed, total, lines)
