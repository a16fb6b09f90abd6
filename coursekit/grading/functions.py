"""Checking a student's function against a reference function on fixed inputs.

Assignments 1 and 3 ask for functions (the Hessian of a linear unit, a Hessian-vector product,
power iteration, ...), not optimizers. A `FunctionTask` names the reference and the inputs; like
`coursekit.grading.optimizers`, the same inputs are built in two places:

* in the student's kernel, where `check_function` (visible test: compare and explain) and
  `record_function` (hidden test: run every case and record the results) call the student's
  function;
* in the grader's own process, where `grade_function` calls the reference on the same inputs
  and compares.

Tasks are registered in `coursekit.grading.registry.TASKS` under keys ``"<assignment>.<name>"``
(``"ps1.hessian"``) by their assignment's module in `coursekit.grading.tasks`. A task's inputs
come from a function of no arguments that builds them from fixed seeds, so both sides get the
same numbers; it is called afresh for every use because a student's function may modify its
arguments. Results may be a tensor, a number, or a tuple/list/dict of them: each leaf is one
tensor of the record, compared in float64 with the task's tolerances.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from . import registry
from .verdict import Verdict


@dataclass(frozen=True)
class FunctionTask:
    """What a student's function must compute.

    Attributes:
        reference: the function the student's is compared with. It imports the library module
            it wraps when called, because that module is hidden in the student's kernel.
        cases: builds the argument tuples, one per case, from fixed seeds.
        describe: one short phrase per case for messages (default: "case 1", ...).
        rtol, atol: tolerances of the float64 comparison.
        hidden: modules the student's kernel may not import while it is graded (the reference's
            own module, when calling it would answer the question).
    """

    reference: Callable
    cases: Callable[[], Sequence[tuple]]
    describe: Sequence[str] = ()
    rtol: float = 1e-6
    atol: float = 1e-9
    hidden: tuple[str, ...] = ()


def task(key: str) -> FunctionTask:
    """The function task `key` (KeyError if there is none, or it is not a function task)."""
    found = registry.task(key)
    if not isinstance(found, FunctionTask):
        raise KeyError(f"{key!r} is not a function task")
    return found


def _label(task: FunctionTask, i: int) -> str:
    return task.describe[i] if i < len(task.describe) else f"case {i + 1}"


def _leaves(result: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor or number in `result`, by its path (``""``, ``"0"``, ``"eigvals"``...)."""
    if isinstance(result, torch.Tensor):
        return {prefix: result.detach().to("cpu", torch.float64).clone()}
    if isinstance(result, bool | int | float):
        return {prefix: torch.tensor(float(result), dtype=torch.float64)}
    if isinstance(result, Mapping):
        items = [(str(k), v) for k, v in result.items()]
    elif isinstance(result, list | tuple):
        items = [(str(i), v) for i, v in enumerate(result)]
    else:
        raise TypeError(f"returned a {type(result).__name__}; expected a tensor or a number")
    out = {}
    for name, value in items:
        out.update(_leaves(value, f"{prefix}/{name}" if prefix else name))
    return out


def _difference(
    actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], task: FunctionTask
):
    """None if equal within tolerance, else a sentence a student can act on."""
    if set(actual) != set(expected):

        def shape(d):
            return "one value" if list(d) == [""] else f"parts {sorted(d)}"

        return f"returned {shape(actual)}, expected {shape(expected)}"
    for name in sorted(expected):
        got, want = actual[name], expected[name]
        where = f" in part {name!r}" if name else ""
        if got.shape != want.shape:
            return f"has shape {tuple(got.shape)}{where}, expected {tuple(want.shape)}"
        close = torch.isclose(got, want, rtol=task.rtol, atol=task.atol, equal_nan=True)
        if not close.all():
            error = (got - want).abs().nan_to_num(math.inf).max().item()
            return f"differs from the reference{where} (largest difference {error:.3g})"
    return None


@functools.cache
def _expected(key: str, case: int) -> dict[str, torch.Tensor]:
    """The reference's result for one case, computed once per grading process."""
    t = task(key)
    return _leaves(t.reference(*t.cases()[case]))


def _run(fn: Callable, args: tuple) -> dict[str, torch.Tensor]:
    return _leaves(fn(*args))


def check_function(key: str, fn: Callable) -> None:
    """Visible test: compare `fn` with the reference on every case of task `key`.

    Raises AssertionError naming the first case that differs and how; prints a check mark
    otherwise.
    """
    t = task(key)
    cases, reference = t.cases(), t.reference
    for i in range(len(cases)):
        label = _label(t, i)
        try:
            actual = _run(fn, t.cases()[i])
        except NotImplementedError:
            raise AssertionError(f"{fn.__name__}: not implemented yet") from None
        except TypeError as e:
            raise AssertionError(f"{fn.__name__}, {label}: {e}") from None
        problem = _difference(actual, _run(reference, t.cases()[i]), t)
        if problem:
            raise AssertionError(f"{fn.__name__}, {label}: {problem}")
    print(f"\u2713 {fn.__name__} matches the reference on {len(cases)} cases")


def record_function(key: str, fn: Callable) -> None:
    """Hidden test: run `fn` on every case of task `key` and record what it returned.

    Like `record_optimizer`, it must come first in a test cell: while grading, the reference's
    module may be hidden, so visible checks after it raise (the grader ignores that).
    """
    from .records import emit

    t = task(key)
    tensors, errors = {}, {}
    for i, args in enumerate(t.cases()):
        try:
            for name, value in _run(fn, args).items():
                tensors[f"{i}|{name}"] = value
        except Exception as e:  # the student's error, reported back to them
            errors[str(i)] = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    emit("function", key, tensors, errors)


def grade_function(key: str, tensors: dict[str, torch.Tensor], errors: dict[str, str]) -> Verdict:
    """Grader side: compare recorded results with the reference's, in this process."""
    t = task(key)
    by_case: dict[str, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        case, _, part = name.partition("|")
        by_case.setdefault(case, {})[part] = value.to(torch.float64)
    passed, lines = 0, []
    n = len(t.cases())
    for i in range(n):
        label = _label(t, i)
        if str(i) in errors:
            lines.append(f"\u2717 {label}: raised {errors[str(i)]}")
            continue
        if str(i) not in by_case:
            lines.append(f"\u2717 {label}: no result recorded")
            continue
        problem = _difference(by_case[str(i)], _expected(key, i), t)
        if problem:
            lines.append(f"\u2717 {label}: {problem}")
        else:
            passed += 1
            lines.append(f"\u2713 {label}")
    return Verdict(passed, n, lines)
