"""Write the sample submissions in samples/ (run again after changing an assignment's solutions).

    python samples/make_samples.py

Fictional students, one folder each per assignment, graded by `coursekit build` into
build/grades/<assignment>/. Every assignment has one right, one partly right and one broken
submission; ps2 has two more.

    ps1   ada    everything right                                           14 / 14
          ben    the Hessian without the bias, standardize divides by 0     10.5 / 14
          cleo   os._exit(0) pasted into optimal_step: the kernel stops       7 / 14 and a note
    ps2   ada    everything right                                           18 / 18
          ben    SGD without dampening, Adam right, the rest blank           7 / 18
          cleo   everything right, in a renamed copy, with warnings         18 / 18 and a note
          dan    a hand-edited file that is not a valid notebook             0 / 18 and a note
          eve    Adam and Adamax handed to torch.optim                      13 / 18
    ps3   ada    everything right                                           16 / 16
          ben    no eigenvector sign, population deviations in parts 3, 5    9.75 / 16
          cleo   a syntax error in hvp, which parts 2 and 3 call too          6 / 16
    ps4   ada    everything right                                           13 / 13
          ben    no sqrt(B) in the noise, a late warm-up, b from defaults     8.25 / 13
          cleo   stationary_variance and StatisticalSGD handed to the library 5 / 13
    ps5   ada    everything right                                           16 / 16
          ben    one data order for all workers, beta* of the mean mode     11.25 / 16
          cleo   two answer cells turned into markdown, a test cell edited   5 / 16 and notes
    ps6   ada    everything right                                           14 / 14
          ben    spectral norm, column-major P, the first rate not the best  7.25 / 14
          cleo   preconditioner and end_to_end_step handed to the library     8 / 14

`SAMPLES` says what each ps1, ps3, ps4, ps5 and ps6 submission is built to earn: for every test
cell that does not pass all its checks, how many it passes (a function's checks are its cases;
an optimizer's are its cases, each in every variant of `coursekit.grading.optimizers.variants`).
`built_to_earn` turns that into a score with the points of the assignment's source notebook (a
part's points are split evenly over its checks); tests/test_ps{1,3,4,5,6}.py grade the samples in
the sandbox and compare.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from coursekit.grading import optimizers
from coursekit.grading.submissions import solved, with_answer

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


@dataclass(frozen=True)
class Sample:
    """What one fictional submission is built to earn.

    Attributes:
        about: what the student did, in a few words.
        passes: test cell grade id -> how many of its checks pass (cases of a function; cases
            times variants of an optimizer), for every test cell that does not pass all of
            them; None when nothing can be graded (the file is no notebook).
        notes: phrases the grading notes of this submission (grades.csv) must contain.
    """

    about: str
    passes: dict[str, int] | None = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def _cell_source(nb, grade_id):
    return next(
        c.source for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id
    )


def _read(assignment: str):
    source = nbformat.read(ROOT / f"solutions/{assignment}/{assignment}.ipynb", as_version=4)
    release = nbformat.read(ROOT / f"assignments/{assignment}/{assignment}.ipynb", as_version=4)
    return source, release


def _writer(out: Path, assignment: str):
    def write(student: str, nb, name: str = f"{assignment}.ipynb") -> None:
        (out / student).mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, out / student / name)

    return write


# --- ps2 --------------------------------------------------------------------------------------

BEN_SGD = """class SGD(Optimizer):
    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = p.grad.add(p, alpha=group["weight_decay"])
                if group["momentum"] != 0:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = d.clone()
                    else:  # forgets the dampening
                        state["momentum_buffer"].mul_(group["momentum"]).add_(d)
                    buf = state["momentum_buffer"]
                    d = d.add(buf, alpha=group["momentum"]) if group["nesterov"] else buf
                p.add_(d, alpha=-group["lr"])
"""

EVE_ADAM = '''class Adam(torch.optim.Adam):
    """Why write it when torch has one?"""
'''

EVE_ADAMAX = """class Adamax(Optimizer):
    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8):
        params = list(params)
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps))
        self._inner = torch.optim.Adamax(params, lr=lr, betas=betas, eps=eps)

    def step(self, closure=None):
        return self._inner.step(closure)
"""


def ps2(out: Path) -> None:
    source, release = _read("ps2")
    good = solved(source, release)
    write = _writer(out, "ps2")
    write("ada", good)
    ben = with_answer(release, "sgd_solution", BEN_SGD)
    write("ben", with_answer(ben, "adam_solution", _cell_source(good, "adam_solution")))
    warned = _cell_source(good, "rprop_solution").replace(
        "    def step(self, closure=None):\n",
        "    def step(self, closure=None):\n        import warnings\n"
        "        warnings.warn('Rprop ignores the learning rate after the first step')\n",
        1,
    )
    write("cleo", with_answer(good, "rprop_solution", warned), "ps2-Copy1.ipynb")
    (out / "dan").mkdir(parents=True, exist_ok=True)
    # Edited by hand outside Jupyter: valid JSON, but its cell lacks fields every code cell has.
    (out / "dan" / "ps2.ipynb").write_text(
        '{"cells": [{"cell_type": "code", "source": "import torch"}], "metadata": {},'
        ' "nbformat": 4, "nbformat_minor": 5}\n'
    )
    write(
        "eve",
        with_answer(with_answer(good, "adam_solution", EVE_ADAM), "adamax_solution", EVE_ADAMAX),
    )


# --- ps1 --------------------------------------------------------------------------------------

# Forgets the bias: a (d, d) matrix where (d + 1, d + 1) is expected, on every case.
PS1_HESSIAN_WITHOUT_BIAS = """\
def hessian(x):
    return x.T @ x / len(x)
"""
# Divides a constant column by its zero standard deviation (nan): right where no column is
# constant, 3 of 4 cases.
PS1_STANDARDIZE_UNGUARDED = """\
def standardize(x):
    return (x - x.mean(dim=0)) / x.std(dim=0, correction=0)
"""

# A line pasted from a script ends the kernel's process while the answer cell runs: the parts
# before it keep their points, nothing after it runs. (Not quit(): Jupyter's quit() stops the
# kernel only after it has run another cell or two, so the points it costs would vary.)
PS1_OPTIMAL_STEP_QUITS = """\
import os

os._exit(0)  # from the script version: stop here for now


def optimal_step(h, g):
    return ((g @ g) / (g @ h @ g)).item()
"""


def ps1(out: Path) -> None:
    source, release = _read("ps1")
    good = solved(source, release)
    write = _writer(out, "ps1")
    write("ada", good)
    ben = with_answer(good, "hessian_solution", PS1_HESSIAN_WITHOUT_BIAS)
    write("ben", with_answer(ben, "standardize_solution", PS1_STANDARDIZE_UNGUARDED))
    write("cleo", with_answer(good, "optimal_step_solution", PS1_OPTIMAL_STEP_QUITS))


# --- ps3 --------------------------------------------------------------------------------------

# Never fixes the sign of the eigenvector: only the case whose last iterate has its largest
# entry negative fails, 1 of 4.
PS3_POWER_UNSIGNED = """\
def power_iteration(model, loss_fn, v0, steps):
    v = v0 / v0.norm()
    for _ in range(steps):
        hv = hvp(model, loss_fn, v)
        v = hv / hv.norm()
    return (v @ hvp(model, loss_fn, v)).item(), v
"""
# The population standard deviation (divides by S): right only where every probe gives the same
# number (a diagonal Hessian), 1 of 4 cases.
PS3_HUTCHINSON_BIASED = """\
def hutchinson(model, loss_fn, probes):
    forms = torch.stack([z @ hvp(model, loss_fn, z) for z in probes])
    return forms.mean().item(), (forms.std(correction=0) / math.sqrt(len(forms))).item()
"""
# The losses are right, but the spread is the population standard deviation (divides by runs,
# as ps1's standardize does): wrong in every case.
PS3_SPREAD_POPULATION = """\
def spread(data, width, runs, steps):
    losses = []
    for k in range(runs):
        net = MLP([64, width, 10], generator=torch.Generator().manual_seed(k)).double()
        optimizer = torch.optim.SGD(net.parameters(), lr=0.2, momentum=0.9)
        for _ in range(steps):
            optimizer.zero_grad()
            F.cross_entropy(net(data.x_train), data.y_train).backward()
            optimizer.step()
        losses.append(F.cross_entropy(net(data.x_test), data.y_test).item())
    losses = torch.tensor(losses, dtype=torch.float64)
    return {"losses": losses, "std": losses.std(correction=0), "gap": losses.max() - losses.min()}
"""


def ps3(out: Path) -> None:
    source, release = _read("ps3")
    good = solved(source, release)
    write = _writer(out, "ps3")
    write("ada", good)
    ben = with_answer(good, "power_iteration_solution", PS3_POWER_UNSIGNED)
    ben = with_answer(ben, "hutchinson_solution", PS3_HUTCHINSON_BIASED)
    write("ben", with_answer(ben, "spread_solution", PS3_SPREAD_POPULATION))
    # One closing parenthesis missing: hvp is never defined, and parts 2 and 3 call it.
    hvp = _cell_source(good, "hvp_solution").replace("create_graph=True)", "create_graph=True", 1)
    write("cleo", with_answer(good, "hvp_solution", hvp))


# --- ps4 --------------------------------------------------------------------------------------

# The noise of one sample where a minibatch's belongs (sigma, not sigma / sqrt(B)): right only
# where B = 1, 1 of 4 cases.
PS4_SIMULATE_NO_SQRT_B = """\
def simulate_sgd(lr, batch_size, curvature, noise, start, chains, steps, seed):
    gen = torch.Generator().manual_seed(seed)
    theta = torch.full((chains,), float(start), dtype=F64)
    for _ in range(steps):
        eps = torch.randn(chains, generator=gen, dtype=F64)
        theta = theta - lr * (curvature * theta + noise * eps)
    return theta
"""
# Counts the warm-up from 1 (the first step already above the base rate): right where there is
# no warm-up or nothing to scale, 2 of 4 cases.
PS4_SCHEDULE_LATE = """\
def linear_scaling_schedule(base_lr, batch_size, base_batch_size, warmup_steps, steps):
    k = batch_size / base_batch_size
    rates = []
    for t in range(steps):
        factor = 1 + (k - 1) * (t + 1) / warmup_steps if t < warmup_steps else k
        rates.append(base_lr * factor)
    return torch.tensor(rates, dtype=F64)
"""
# Hands parts 1a and 3 to the library, which is hidden while grading: 0 points for both.
PS4_VARIANCE_FROM_LIBRARY = """\
from coursekit.sgd_theory import NoisyQuadratic
from coursekit.sgd_theory import stationary_variance as _library


def stationary_variance(lr, batch_size, curvature, noise):
    return _library(lr, batch_size, NoisyQuadratic(curvature=curvature, noise=noise))
"""
PS4_STATISTICAL_FROM_LIBRARY = """\
from coursekit.optim import StatisticalSGD  # why write it again?
"""


def _replaced(text: str, old: str, new: str) -> str:
    """`text` with `old` replaced by `new` once; `old` must occur (the solution may change)."""
    if old not in text:
        raise ValueError(f"not in the solution any more: {old!r}")
    return text.replace(old, new, 1)


def ps4(out: Path) -> None:
    source, release = _read("ps4")
    good = solved(source, release)
    write = _writer(out, "ps4")
    write("ada", good)
    ben = with_answer(good, "simulate_sgd_solution", PS4_SIMULATE_NO_SQRT_B)
    ben = with_answer(ben, "linear_scaling_schedule_solution", PS4_SCHEDULE_LATE)
    # b from __init__'s defaults instead of the group: right with one group, wrong with two.
    defaults_b = _replaced(
        _cell_source(good, "statistical_sgd_solution"),
        'b, k = group["batch_size"], group["warmup"]',
        'b, k = self.defaults["batch_size"], group["warmup"]',
    )
    write("ben", with_answer(ben, "statistical_sgd_solution", defaults_b))
    cleo = with_answer(good, "stationary_variance_solution", PS4_VARIANCE_FROM_LIBRARY)
    write("cleo", with_answer(cleo, "statistical_sgd_solution", PS4_STATISTICAL_FROM_LIBRARY))


# --- ps6 --------------------------------------------------------------------------------------

# The spectral norm where the Frobenius norm belongs: right only where both are 0, for the
# balanced net, 1 of 4 cases.
PS6_BALANCEDNESS_SPECTRAL = """\
def balancedness(weights):
    gaps = [
        torch.linalg.matrix_norm(after.T @ after - before @ before.T, ord=2)
        for before, after in zip(weights[:-1], weights[1:])
    ]
    return torch.stack(gaps)
"""
# The paper's column-major Kronecker order in the row-major convention: right only at depth 1,
# where P = I, 1 of 4 cases. (end_to_end_step does not use it and stays right.)
PS6_PRECONDITIONER_COLUMN_MAJOR = """\
def matrix_power(m, p):
    if p == 0:
        return torch.eye(m.shape[0], dtype=m.dtype)
    values, vectors = torch.linalg.eigh(m)
    return vectors @ torch.diag(values.clamp_min(0) ** p) @ vectors.T


def preconditioner(w_e, depth):
    left, right = w_e @ w_e.T, w_e.T @ w_e
    return sum(
        torch.kron(matrix_power(right, (depth - j) / depth), matrix_power(left, (j - 1) / depth))
        for j in range(1, depth + 1)
    )
"""
# Takes the first rate of the grid that reaches the threshold, not the fastest one.
PS6_FIRST_RATE = """\
def steps_by_depth(inits, x, y, lrs, threshold, max_steps):
    best = []
    for weights in inits:
        found = math.inf
        for lr in lrs:
            hits = torch.nonzero(l4_losses(weights, x, y, lr, max_steps) <= threshold)
            if len(hits):
                found = int(hits[0])
                break
        best.append(found)
    return torch.tensor(best, dtype=F64)
"""
# Parts 2a and 2b handed to the library, which is hidden while grading: 0 points for both.
PS6_FROM_LIBRARY = """\
from coursekit.trajectories import end_to_end_step, preconditioner  # noqa: F401
"""


def ps6(out: Path) -> None:
    source, release = _read("ps6")
    good = solved(source, release)
    write = _writer(out, "ps6")
    write("ada", good)
    ben = with_answer(good, "balancedness_solution", PS6_BALANCEDNESS_SPECTRAL)
    ben = with_answer(ben, "preconditioner_solution", PS6_PRECONDITIONER_COLUMN_MAJOR)
    write("ben", with_answer(ben, "steps_by_depth_solution", PS6_FIRST_RATE))
    # matrix_power lives in preconditioner's cell, and end_to_end_step's cell is hers too.
    cleo = with_answer(good, "preconditioner_solution", PS6_FROM_LIBRARY)
    write("cleo", with_answer(cleo, "end_to_end_step_solution", "# see the cell above\n"))


# --- ps5 --------------------------------------------------------------------------------------

# Every worker draws the same minibatches (seed instead of seed + r): right only for one
# worker, 1 of 4 cases.
PS5_SIMULATE_ONE_SEED = """\
def simulate(X, y, x0, p, lr, alpha, tau, steps, batch_size, seed):
    streams = [minibatches(len(X), batch_size, steps, seed=seed) for r in range(p)]
    workers, center = x0.expand(p, -1).clone(), x0.clone()
    for t in range(steps):
        index = torch.stack([next(stream) for stream in streams])
        grads = least_squares_grads(X[index], y[index], workers)
        workers, center = easgd_step(workers, center, grads, lr, alpha, t % tau == 0)
    return workers, center
"""
# Only the mean mode decides: right where p = 1 or where the mean mode ends the interval, 3 of
# 4 cases (in the last one the difference mode ends it first).
PS5_BETA_MEAN_MODE = """\
def largest_stable_beta(eta, tau, p):
    def stable(beta):
        M, _ = mode_maps(torch.tensor(eta, dtype=F64), torch.tensor(beta, dtype=F64), tau, p)
        return torch.linalg.eigvals(M).abs().max().item() < 1

    lo, hi = 0.0, 2.0
    while hi - lo > 1e-6:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if stable(mid) else (lo, mid)
    return (lo + hi) / 2
"""
# The same belief as in simulate: both ranks draw the minibatches of `seed`.
PS5_WORKER_ONE_SEED = """\
def easgd_worker(X, y, x0, lr, alpha, tau, steps, batch_size, seed):
    x, center = x0.clone(), x0.clone()
    for t, index in enumerate(minibatches(len(X), batch_size, steps, seed=seed)):
        grad = (2.0 / len(index)) * X[index].T @ (X[index] @ x - y[index])
        if t % tau == 0:
            elastic = alpha * (x - center)
            center = center + all_reduce(elastic.clone())
            x = x - lr * grad - elastic
        else:
            x = x - lr * grad
    return x, center
"""


def _as_markdown(nb, grade_id: str):
    """A copy of `nb` whose cell `grade_id` was turned into markdown (the "m" key in Jupyter)."""
    nb = copy.deepcopy(nb)
    for i, c in enumerate(nb.cells):
        if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            markdown = nbformat.v4.new_markdown_cell(c.source, metadata=c.metadata)
            markdown.id = c.id
            nb.cells[i] = markdown
    return nb


def ps5(out: Path) -> None:
    source, release = _read("ps5")
    good = solved(source, release)
    write = _writer(out, "ps5")
    write("ada", good)
    ben = with_answer(good, "simulate_solution", PS5_SIMULATE_ONE_SEED)
    ben = with_answer(ben, "largest_stable_beta_solution", PS5_BETA_MEAN_MODE)
    write("ben", with_answer(ben, "easgd_worker_solution", PS5_WORKER_ONE_SEED))
    cleo = _as_markdown(_as_markdown(good, "easgd_step_solution"), "mode_maps_solution")
    for c in cleo.cells:  # and an assertion of a test cell commented out
        if c.metadata.get("nbgrader", {}).get("grade_id") == "test_downpour_step":
            c.source = c.source.replace("assert torch.equal(new[1], server)", "# assert", 1)
    write("cleo", cleo)


WRITERS = {"ps1": ps1, "ps2": ps2, "ps3": ps3, "ps4": ps4, "ps5": ps5, "ps6": ps6}

# What the ps1, ps3, ps4, ps5 and ps6 samples earn (ps2's are checked in tests/test_grading_end_to_end.py).
SAMPLES: dict[str, dict[str, Sample]] = {
    "ps1": {
        "ada": Sample("everything right"),
        "ben": Sample(
            "the Hessian without the bias, standardize divides a constant column by 0",
            {"test_hessian": 0, "test_standardize": 3},
        ),
        "cleo": Sample(
            "os._exit(0) pasted into optimal_step's cell: the kernel stops there",
            {"test_optimal_step": 0, "test_standardize": 0, "test_gradient_descent": 0},
            ("The kernel died in cell number",),
        ),
    },
    "ps3": {
        "ada": Sample("everything right"),
        "ben": Sample(
            "no sign convention, a biased Hutchinson error, the population spread",
            {"test_power_iteration": 3, "test_hutchinson": 1, "test_spread": 0},
        ),
        "cleo": Sample(
            "a syntax error in hvp, which power_iteration and hutchinson call",
            {"test_hvp": 0, "test_power_iteration": 0, "test_hutchinson": 0},
        ),
    },
    "ps4": {
        "ada": Sample("everything right"),
        "ben": Sample(
            "no sqrt(B) in the minibatch noise, a warm-up one step late, b read from defaults",
            {
                "test_simulate_sgd": 1,
                "test_linear_scaling_schedule": 2,
                # every variant but "two param groups", in each of the 3 cases
                "test_statistical_sgd": 3 * (len(optimizers.variants()) - 1),
            },
        ),
        "cleo": Sample(
            "stationary_variance and StatisticalSGD handed to the library, hidden while grading",
            {"test_stationary_variance": 0, "test_statistical_sgd": 0},
        ),
    },
    "ps5": {
        "ada": Sample("everything right"),
        "ben": Sample(
            "one data order for all workers, simulated and real; beta* of the mean mode alone",
            {"test_simulate": 1, "test_largest_stable_beta": 3, "test_real_run": 0},
        ),
        "cleo": Sample(
            "easgd_step and mode_maps turned into markdown, a test cell edited",
            {
                "test_easgd_step": 0,
                "test_mode_maps": 0,
                "test_largest_stable_beta": 0,
                "test_simulate": 0,
            },
            (
                "cell 'easgd_step_solution' was changed to markdown",
                "cell 'mode_maps_solution' was changed to markdown",
                "cell 'test_downpour_step' was edited; the original was restored",
            ),
        ),
    },
    "ps6": {
        "ada": Sample("everything right"),
        "ben": Sample(
            "the spectral norm for balancedness, the column-major P, the first rate that "
            "reaches the threshold instead of the fastest",
            {"test_balancedness": 1, "test_preconditioner": 1, "test_steps_by_depth": 0},
        ),
        "cleo": Sample(
            "preconditioner and end_to_end_step handed to the library, hidden while grading",
            {"test_preconditioner": 0, "test_end_to_end_step": 0},
        ),
    },
}


def built_to_earn(assignment: str, student: str) -> tuple[float, float]:
    """(score, max score) that `SAMPLES[assignment][student]` is built to earn.

    Each test cell's points come from the assignment's source notebook, its number of checks
    from its task (`coursekit.grading.registry`): a function task's cases, or an optimizer
    task's cases times `optimizers.variants()`. A cell passing k of n checks earns
    ``round(points * k / n, 2)``, as the grader splits a part's points.
    """
    from coursekit.grading import registry
    from coursekit.grading.score import expected_records, is_test

    source, _ = _read(assignment)
    sample = SAMPLES[assignment][student]
    score = total = 0.0
    for cell in source.cells:
        if not is_test(cell):
            continue
        points = float(cell.metadata.nbgrader["points"])
        total += points
        if sample.passes is None:
            continue
        ((_, key),) = expected_records(cell.source)
        task = registry.task(key)
        if isinstance(task, optimizers.OptimizerTask):
            cases = len(task.cases) * len(optimizers.variants())
        else:
            cases = len(task.cases())
        passed = sample.passes.get(cell.metadata.nbgrader["grade_id"], cases)
        score += round(points * passed / cases, 2)
    return round(score, 2), total


def main() -> None:
    for assignment, write in WRITERS.items():
        write(HERE / assignment)


if __name__ == "__main__":
    main()
