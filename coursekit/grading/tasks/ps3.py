"""Assignment 3, "Curvature": what each answer is compared with.

Five functions, each checked against a reference on the cases below
(``check_function("ps3.hvp", hvp)`` in a visible test, ``record_function`` in a hidden one):

* ``hvp(model, loss_fn, v)``: the Hessian-vector product by double backward;
* ``power_iteration(model, loss_fn, v0, steps)``: ``steps`` plain power steps from ``v0``;
* ``hutchinson(model, loss_fn, probes)``: the trace estimate from the given Rademacher probes;
* ``classify(w)``: gradient norm, Hessian eigenvalues and index of the 1-1-1 net at ``w``;
* ``spread(data, width, runs, steps)``: a small Choromanska et al. (2015) experiment: the test
  losses of ``runs`` nets ``d -> width -> 10`` trained from the seeds 0, 1, ..., and their
  spread (sample standard deviation, worst minus best).

The student's functions take their random numbers (``v0``, ``probes``) as arguments, so the
student and the reference do the same arithmetic and can be compared tightly. The references are
the private functions at the end of this module; each gets its Hessian-vector products or its
Hessian from `coursekit.curvature`, which is hidden while a submission is graded, so calling
them from a submission fails there just as calling `coursekit.curvature` does. The inputs are
built here with plain torch and `coursekit.models` for the same reason.

Tolerances: every case is float64. The student's arithmetic differs from the reference's only
in the order of operations (a dense ``H @ v`` instead of double backward, normalising ``v0``
first or not), which changes results by a few units of 1e-16 relative; power iteration
contracts such errors rather than amplifying them. The default ``rtol = 1e-6`` leaves a wide
margin over that and still catches any real mistake (a missing factor, a wrong sign, a biased
standard deviation). ``atol = 1e-9`` covers the exact zeros (a gradient at a critical point,
the standard error of Hutchinson's estimate for a diagonal Hessian).

``spread`` is compared with its own, tighter tolerances (`SPREAD_RTOL`, `SPREAD_ATOL`). Its
reference trains all the nets at once with `coursekit.ensembles` (batched kernels under
`torch.func.vmap`); a student trains them one by one in a loop. In float64 the two add the same
products in another order, about 1e-16 relative per operation; gradient descent at these sizes
does not amplify that much: measured on the digits, loop against ensemble, the test losses
differ by at most 5e-16 relative after 40 steps and after 150 (widths 2, 8, 32). So
``rtol = 1e-9`` leaves six orders of magnitude of margin, and still rejects every real mistake:
one step more or less moves the losses by 1e-3 relative or more, no momentum by 50 %, float32
training by 1e-7 to 3e-5 (the notebook asks for float64). ``atol = 1e-12`` only matters for a
spread of 0. The reference's `coursekit.ensembles` is hidden while a submission is graded, like
`coursekit.curvature`, so the reference cannot be called from a submission.

Conventions (the notebook states them too): parameters form one flat vector in the order of
``model.parameters()``; power iteration normalises ``v0``, then repeats ``v <- Hv / ||Hv||``
``steps`` times, returns the Rayleigh quotient ``v'Hv`` of the last ``v`` and ``v`` itself with
its sign chosen so that its entry of largest magnitude is positive; Hutchinson's standard error
uses the sample standard deviation (``S - 1``); the index counts eigenvalues below ``-1e-6``.
``spread``: net k is ``MLP([d, width, 10], generator=torch.Generator().manual_seed(k)).double()``,
trained by ``torch.optim.SGD(lr=SPREAD_LR, momentum=SPREAD_MOMENTUM)`` for ``steps`` full-batch
steps on the cross-entropy of the training set; its loss is the cross-entropy on the test set;
the standard deviation is the sample one (``runs - 1``).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...data import Split, digits
from ...models import MLP, OneOneOneNet, ParameterVector
from ..functions import FunctionTask
from ..registry import TASKS

F64 = torch.float64
HIDDEN = ("coursekit.curvature",)
SPREAD_HIDDEN = (*HIDDEN, "coursekit.ensembles")  # the reference of `spread` trains with it
SPREAD_LR, SPREAD_MOMENTUM = 0.2, 0.9
SPREAD_RTOL, SPREAD_ATOL = 1e-9, 1e-12  # see the module docstring
SEED = 2026_03  # every case below draws from a generator seeded from this
INDEX_TOL = 1e-6  # eigenvalues below -INDEX_TOL are negative


def _generator(offset: int) -> torch.Generator:
    return torch.Generator().manual_seed(SEED + offset)


def _quadratic(a: Tensor, offset: int):
    """(model, loss_fn) with L = theta'A theta / 2 + b'theta, so H = A everywhere."""
    gen = _generator(offset)
    n = len(a)
    model = ParameterVector(torch.randn(n, generator=gen, dtype=F64))
    b = torch.randn(n, generator=gen, dtype=F64)

    def loss_fn(m):
        return 0.5 * m.theta @ a @ m.theta + b @ m.theta

    return model, loss_fn


def _rotated(eigenvalues, offset: int) -> Tensor:
    """Q diag(eigenvalues) Q' with a random rotation Q."""
    n = len(eigenvalues)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=_generator(offset), dtype=F64))
    return q @ torch.diag(torch.tensor(eigenvalues, dtype=F64)) @ q.T


def _one_one_one(w1: float, w2: float):
    """The 1-1-1 net at (w1, w2) with its loss L = (1 - w2 w1)^2 on the sample x = y = 1."""
    model = OneOneOneNet(w1, w2).double()
    one = torch.tensor(1.0, dtype=F64)

    def loss_fn(m):
        return (m(one) - one) ** 2

    return model, loss_fn


def _mlp_mse(offset: int):
    """A 3-4-2 tanh net (26 parameters) and its mean squared error on 8 random points."""
    gen = _generator(offset)
    model = MLP([3, 4, 2], activation="tanh", generator=gen).double()
    x = torch.randn(8, 3, generator=gen, dtype=F64)
    y = torch.randn(8, 2, generator=gen, dtype=F64)

    def loss_fn(m):
        return F.mse_loss(m(x), y)

    return model, loss_fn


def _mlp_cross_entropy(offset: int):
    """A 5-6-3 tanh classifier (57 parameters) and its cross-entropy on 20 random points."""
    gen = _generator(offset)
    model = MLP([5, 6, 3], activation="tanh", generator=gen).double()
    x = torch.randn(20, 5, generator=gen, dtype=F64)
    y = torch.randint(0, 3, (20,), generator=gen)

    def loss_fn(m):
        return F.cross_entropy(m(x), y)

    return model, loss_fn


def _size(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _randn(model: nn.Module, offset: int) -> Tensor:
    return torch.randn(_size(model), generator=_generator(offset), dtype=F64)


def _rademacher(samples: int, model: nn.Module, offset: int) -> Tensor:
    """(S, n) independent signs +-1."""
    signs = torch.randint(0, 2, (samples, _size(model)), generator=_generator(offset))
    return signs.to(F64) * 2.0 - 1.0


DIAGONAL = (1.0, 10.0, 100.0)
ROTATED = (3.0, 50.0, -20.0, 0.5)  # largest in magnitude: 50


def _hvp_cases() -> list[tuple]:
    diagonal = _quadratic(torch.diag(torch.tensor(DIAGONAL, dtype=F64)), 1)
    saddle = _one_one_one(0.0, 0.0)
    mse, cross_entropy = _mlp_mse(2), _mlp_cross_entropy(3)
    return [
        (*diagonal, torch.tensor([1.0, 1.0, 1.0], dtype=F64)),
        (*saddle, torch.tensor([1.0, 0.0], dtype=F64)),
        (*mse, _randn(mse[0], 4)),
        (*cross_entropy, _randn(cross_entropy[0], 5)),
    ]


def _power_cases() -> list[tuple]:
    rotated = _quadratic(_rotated(ROTATED, 6), 7)
    mse, cross_entropy = _mlp_mse(8), _mlp_cross_entropy(9)
    return [
        (*_one_one_one(1.0, 1.0), torch.tensor([1.0, 0.0], dtype=F64), 3),
        (*rotated, _randn(rotated[0], 10), 60),
        (*mse, _randn(mse[0], 11), 100),
        (*cross_entropy, _randn(cross_entropy[0], 12), 100),
    ]


def _hutchinson_cases() -> list[tuple]:
    diagonal = _quadratic(torch.diag(torch.tensor(DIAGONAL, dtype=F64)), 13)
    saddle = _one_one_one(0.0, 0.0)
    rotated = _quadratic(_rotated(ROTATED, 14), 15)
    mse = _mlp_mse(16)
    return [
        (*diagonal, _rademacher(4, diagonal[0], 17)),
        (*saddle, _rademacher(8, saddle[0], 18)),
        (*rotated, _rademacher(20, rotated[0], 19)),
        (*mse, _rademacher(50, mse[0], 20)),
    ]


POINTS = ((0.0, 0.0), (1.0, 1.0), (-1.0, -1.0), (2.0, 0.5), (0.5, 0.5), (1.0, -1.0))


def _classify_cases() -> list[tuple]:
    return [(torch.tensor(point, dtype=F64),) for point in POINTS]


@functools.cache
def _digits() -> Split:
    return digits(dtype=F64)


def _spread_data() -> Split:
    """The digits in float64 (1348 training and 449 test images of 8 x 8 pixels, standardised),
    a fresh copy: every case of `spread` trains on it."""
    data = _digits()
    return Split(*(t.clone() for t in (data.x_train, data.y_train, data.x_test, data.y_test)))


SPREAD_CASES = ((2, 5, 40), (8, 4, 30), (32, 3, 50))  # (width, runs, steps)


def _spread_cases() -> list[tuple]:
    return [(_spread_data(), width, runs, steps) for width, runs, steps in SPREAD_CASES]


# --- The references: products and Hessians from coursekit.curvature ------------------------


def _hvp(model: nn.Module, loss_fn, v: Tensor) -> Tensor:
    from coursekit import curvature

    return curvature.hvp(model, loss_fn, v)


def _power_iteration(model: nn.Module, loss_fn, v0: Tensor, steps: int) -> tuple[Tensor, Tensor]:
    from coursekit import curvature

    v = v0 / v0.norm()
    for _ in range(steps):
        hv = curvature.hvp(model, loss_fn, v)
        v = hv / hv.norm()
    eigenvalue = v @ curvature.hvp(model, loss_fn, v)
    sign = torch.sign(v[v.abs().argmax()])  # make the entry of largest magnitude positive
    return eigenvalue, sign * v


def _hutchinson(model: nn.Module, loss_fn, probes: Tensor) -> tuple[Tensor, Tensor]:
    from coursekit import curvature

    forms = torch.stack([z @ curvature.hvp(model, loss_fn, z) for z in probes])  # (S,)
    return forms.mean(), forms.std() / len(forms) ** 0.5


def _classify(w: Tensor) -> dict[str, Tensor | int]:
    from coursekit import curvature

    model, loss_fn = _one_one_one(float(w[0]), float(w[1]))
    grad = torch.autograd.grad(loss_fn(model), list(model.parameters()))
    eigenvalues = torch.linalg.eigvalsh(curvature.hessian(model, loss_fn))  # ascending
    return {
        "grad_norm": torch.cat([g.reshape(-1) for g in grad]).norm(),
        "eigenvalues": eigenvalues,
        "index": int((eigenvalues < -INDEX_TOL).sum()),
    }


def _spread(data: Split, width: int, runs: int, steps: int) -> dict[str, Tensor]:
    from coursekit.ensembles import Ensemble, evaluate, train_ensemble

    classes = int(data.y_train.max()) + 1
    models = [
        MLP([data.x_train.shape[1], width, classes], generator=torch.Generator().manual_seed(k))
        for k in range(runs)
    ]
    ensemble = Ensemble([m.double() for m in models])
    optimizer = torch.optim.SGD(ensemble.parameters(), lr=SPREAD_LR, momentum=SPREAD_MOMENTUM)
    if steps > 0:
        train_ensemble(
            ensemble, optimizer, F.cross_entropy, data.x_train, data.y_train, steps=steps
        )
    losses = evaluate(ensemble, data.x_test, data.y_test).loss  # (runs,)
    return {"losses": losses, "std": losses.std(), "gap": losses.max() - losses.min()}


TASKS["ps3.hvp"] = FunctionTask(
    reference=_hvp,
    cases=_hvp_cases,
    describe=(
        "a quadratic with H = diag(1, 10, 100), v = (1, 1, 1)",
        "the 1-1-1 net at the saddle (0, 0), v = (1, 0)",
        "a 3-4-2 tanh net, mean squared error, random v",
        "a 5-6-3 tanh classifier, cross-entropy, random v",
    ),
    hidden=HIDDEN,
)
TASKS["ps3.power_iteration"] = FunctionTask(
    reference=_power_iteration,
    cases=_power_cases,
    describe=(
        "the 1-1-1 net at (1, 1), v0 = (1, 0), 3 steps",
        "a rotated quadratic with eigenvalues 3, 50, -20, 0.5, 60 steps",
        "a 3-4-2 tanh net, mean squared error, 100 steps",
        "a 5-6-3 tanh classifier, cross-entropy, 100 steps",
    ),
    hidden=HIDDEN,
)
TASKS["ps3.hutchinson"] = FunctionTask(
    reference=_hutchinson,
    cases=_hutchinson_cases,
    describe=(
        "a quadratic with H = diag(1, 10, 100), 4 probes",
        "the 1-1-1 net at the saddle (0, 0), 8 probes",
        "a rotated quadratic with eigenvalues 3, 50, -20, 0.5, 20 probes",
        "a 3-4-2 tanh net, mean squared error, 50 probes",
    ),
    hidden=HIDDEN,
)
TASKS["ps3.classify"] = FunctionTask(
    reference=_classify,
    cases=_classify_cases,
    describe=tuple(f"(w1, w2) = ({a:g}, {b:g})" for a, b in POINTS),
    hidden=HIDDEN,
)
TASKS["ps3.spread"] = FunctionTask(
    reference=_spread,
    cases=_spread_cases,
    describe=tuple(
        f"width {width}, {runs} nets, {steps} steps" for width, runs, steps in SPREAD_CASES
    ),
    rtol=SPREAD_RTOL,
    atol=SPREAD_ATOL,
    hidden=SPREAD_HIDDEN,
)
