r"""When do EASGD and round-robin ADMM converge on a quadratic? Spectral radii of their linear maps.

On the noiseless quadratic :math:`f(x) = \tfrac{h}{2} x^2` every algorithm of lecture 8 is a
linear map of its state; the iteration converges from every start iff the map's spectral
radius (largest eigenvalue modulus) is below 1, and the radius is the rate per application.

**EASGD, synchronous, period** :math:`\tau`. With :math:`a = 1 - \eta h` and
:math:`\beta = p\alpha`, a communication step (:math:`t \bmod \tau = 0`) is

.. math::
    x_i' = (a - \alpha) x_i + \alpha \tilde x, \qquad
    \tilde x' = (1 - \beta) \tilde x + \alpha \textstyle\sum_i x_i ,

and the other :math:`\tau - 1` steps are :math:`x_i' = a x_i`, :math:`\tilde x' = \tilde x`.
Write :math:`x_i = \bar x + e_i` with :math:`\bar x = \tfrac1p \sum_i x_i`, so
:math:`\sum_i e_i = 0`. The map commutes with permuting the workers, so it splits:

* the mean mode :math:`(\bar x, \tilde x)`: :math:`\bar x' = (a - \alpha)\bar x + \alpha\tilde x`,
  :math:`\tilde x' = \beta \bar x + (1 - \beta)\tilde x`; over one period

  .. math::
      M_{\text{mean}} = \begin{pmatrix} a^{\tau-1} & 0 \\ 0 & 1 \end{pmatrix}
      \begin{pmatrix} a - \beta/p & \beta/p \\ \beta & 1 - \beta \end{pmatrix};

* the p - 1 difference modes :math:`e_i` (the center does not see them, since they sum to
  zero): :math:`e_i' = a^{\tau - 1}(a - \beta/p)\, e_i` over one period.

The period map of :math:`(x_1, \dots, x_p, \tilde x)` is block diagonal in that basis, so its
spectral radius is :math:`\max(\rho(M_{\text{mean}}), |a^{\tau-1}(a - \beta/p)|)` (the second
term only if p > 1): two closed forms, evaluated here for a whole grid at once.
`easgd_period_map` builds the full (p + 1) x (p + 1) map by running the simulator on the basis
vectors instead, which the tests compare with the closed forms.

**ADMM, round robin** (Zhang, Choromanska, LeCun 2015, arXiv:1412.6651, section 3.1; seed
figure 1). The state is :math:`s = (\lambda_1, x_1, \dots, \lambda_p, x_p, \tilde x)`
(:math:`2p + 1` numbers, multipliers divided by :math:`\rho`). Worker i's turn is three linear
maps, each one of the sub-updates in `coursekit.distributed.simulate` on
:math:`F(x) = x^2/2`:

.. math::
    F^i_1:\ \lambda_i \leftarrow \lambda_i - (x_i - \tilde x), \quad
    F^i_2:\ x_i \leftarrow \frac{(1 - \eta) x_i + \eta\rho(\lambda_i + \tilde x)}{1 + \eta\rho},
    \quad
    F^i_3:\ \tilde x \leftarrow \tfrac1p \textstyle\sum_j (x_j - \lambda_j).

These follow from the seed's augmented Lagrangian
:math:`\max_\lambda \min_x \sum_i F(x_i) - \lambda_i (x_i - \tilde x) + \tfrac\rho2
\|x_i - \tilde x\|^2` (dual ascent of step :math:`\rho`; F linearised with a proximal term
:math:`\tfrac1{2\eta}\|x - x_i\|^2`; the center minimised exactly) and are, as we read it, the
paper's equations (10)-(12). The round-robin map is
:math:`F = F^p_3 F^p_2 F^p_1 \cdots F^1_3 F^1_2 F^1_1`. Each worker's own
:math:`F^i_3 F^i_2 F^i_1` can be stable while the composition of these non-symmetric maps is
not: at :math:`\eta = 0.001, \rho = 2.5` the radius is about 1.0010 for p = 3 and 1.0023 for
p = 8, so ADMM diverges exponentially.

**EASGD, round robin** (the asynchronous scheme with one worker at a time, as for ADMM above).
Worker i's turn moves only :math:`(x_i, \tilde x)`, from their old values:

.. math::
    x_i' = (1 - \eta h_i - \alpha) x_i + \alpha \tilde x, \qquad
    \tilde x' = \alpha x_i + (1 - \alpha) \tilde x ,

the others hold. On its pair this is the symmetric p = 1, :math:`\tau = 1` map, whose
eigenvalues lie in (-1, 1) iff :math:`0 < \eta h_i < 2` and
:math:`0 < \alpha < (4 - 2\eta h_i)/(4 - \eta h_i)` ("the curve"). (Seed 000's Algorithm 1
takes the gradient step after the spring instead; the order argument below holds for that
turn too, since it only needs each turn to move :math:`(x_i, \tilde x)` alone.) What follows for a round
:math:`R = F_{\sigma(p)} \cdots F_{\sigma(1)}` (order :math:`\sigma`), with
:math:`a_i = 1 - \eta h_i - \alpha`:

* its characteristic polynomial is
  :math:`\lambda \prod_i (\lambda - a_i) - \prod_i \big((1 - \alpha)(\lambda - a_i) + \alpha^2\big)`
  (eliminate :math:`x_i = \alpha \tilde x_{\text{before}} / (\lambda - a_i)` turn by turn:
  the center is multiplied by :math:`1 - \alpha + \alpha^2 / (\lambda - a_i)` at turn i, and
  must come back multiplied by :math:`\lambda`). It is symmetric in the workers, so **the
  spectrum of a round does not depend on the order**, even with different curvatures
  :math:`h_i`. (Round-robin ADMM's radius does not depend on the order either: the order is
  not what separates the two.)
* below the curve every turn contracts its pair and leaves the rest, in the Euclidean norm,
  so every sequence of turns is non-expansive and every stretch in which each worker takes a
  turn contracts: **any schedule converges**, also one whose order changes from round to round.
* on the curve (equal curvatures) the polynomial at :math:`\lambda = -1` is
  :math:`-u^p (1 + (-1)^p)`, :math:`u = \eta + \alpha - 2`: for odd p a round reaches the
  eigenvalue -1 exactly there, so the curve is the exact condition; for even p a fixed-order
  round still contracts in a thin band above it (`round_robin_boundary`), where the schedule
  matters: with a random order per round the state can grow (`schedule_growth`). The curve is
  sufficient for every p and every schedule.

    radius = stability_map(torch.linspace(0, 2, 101), torch.linspace(0, 2, 101), tau=10, p=100)
    share = stable_fraction(tau=1, p=1)     # near 1 - ln 2, the exact share of the square
    turns = [easgd_turn_map(0.5, 0.3, 4, i) for i in range(4)]
    order_radii(turns)                      # 24 equal radii, one per order
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .simulate import (
    admm_center_step,
    admm_dual_step,
    admm_worker_step,
    simulate_easgd_quadratic,
)

__all__ = [
    "admm_round_robin_map",
    "admm_spectral_radius",
    "admm_sub_maps",
    "easgd_mode_maps",
    "easgd_period_map",
    "easgd_round_robin_map",
    "easgd_round_robin_radius",
    "easgd_turn_map",
    "order_radii",
    "round_robin_boundary",
    "schedule_growth",
    "spectral_radius",
    "stability_map",
    "stable_fraction",
]


def spectral_radius(matrices: Tensor) -> Tensor:
    """The largest eigenvalue modulus of each matrix of a batch ``(..., n, n) -> (...)``."""
    return torch.linalg.eigvals(matrices).abs().amax(dim=-1)


# ---------------------------------------------------------------------------------------------
# EASGD, synchronous: the reduced closed forms and the full map from the simulator.
# ---------------------------------------------------------------------------------------------


def easgd_mode_maps(
    eta: Tensor | float, beta: Tensor | float, *, tau: int, p: int, h: float = 1.0
) -> tuple[Tensor, Tensor]:
    r"""One period of synchronous EASGD, split into its modes (module docstring).

    Returns the mean-mode matrix (..., 2, 2) acting on :math:`(\bar x, \tilde x)` and the
    difference-mode factor (...), for ``eta`` and ``beta`` broadcast against each other.
    """
    _check_tau_p(tau, p)
    eta, beta = torch.broadcast_tensors(*_as_float64(eta, beta))
    a = 1.0 - eta * h
    alpha = beta / p
    decay = a ** (tau - 1)  # the tau - 1 gradient-only steps of a period (a**0 = 1, also at a = 0)
    mean = torch.stack(
        [
            torch.stack([decay * (a - alpha), decay * alpha], dim=-1),
            torch.stack([beta, 1.0 - beta], dim=-1),
        ],
        dim=-2,
    )  # (..., 2, 2)
    return mean, decay * (a - alpha)


def stability_map(etas: Tensor, betas: Tensor, *, tau: int, p: int, h: float = 1.0) -> Tensor:
    """Spectral radius of one period of synchronous EASGD, ``(len(betas), len(etas))``.

    Row j, column i is the radius at ``eta = etas[i]``, ``beta = betas[j]`` (so it plots with
    eta on the x axis); below 1 the workers and the center converge to 0 from every start.
    """
    # (B, E, 2, 2) and (B, E): rows beta, columns eta
    mean, difference = easgd_mode_maps(etas[None, :], betas[:, None], tau=tau, p=p, h=h)
    radius = _radius_2x2(mean)
    if p > 1:
        radius = torch.maximum(radius, difference.abs())
    return radius


def stable_fraction(*, tau: int, p: int, points: int = 101, h: float = 1.0) -> float:
    r"""Share of the open square :math:`0 < \eta, \beta < 2` where one period contracts.

    Counted on the ``points`` x ``points`` uniform grid of :math:`[0, 2]^2` that lecture 8's
    `coursekit.plotting.plot_stability_map` draws, without its edges (the radius is at least 1
    on :math:`\eta = 0` and :math:`\beta = 0`): the share of the :math:`(points - 2)^2` inner
    points where `stability_map` is below 1. For p = 1, :math:`\tau = 1` the stable set is
    :math:`\alpha < (4 - 2\eta)/(4 - \eta)` (module docstring), of area
    :math:`\int_0^2 (2 - \tfrac{4}{4 - \eta})\, d\eta = 4 - 4\ln 2`: a share
    :math:`1 - \ln 2 \approx 0.307` of the square, which the grid approaches as it refines.
    """
    if points < 3:
        raise ValueError(f"Invalid points: {points} (must be >= 3)")
    axis = torch.linspace(0, 2, points, dtype=torch.float64)
    radius = stability_map(axis, axis, tau=tau, p=p, h=h)[1:-1, 1:-1]
    return (radius < 1).double().mean().item()


def _radius_2x2(m: Tensor) -> Tensor:
    # Eigenvalues of a 2x2 matrix from its trace and determinant: (T +- sqrt(T^2 - 4D)) / 2,
    # with a complex square root for the rotating (complex pair) case.
    trace = m[..., 0, 0] + m[..., 1, 1]
    det = m[..., 0, 0] * m[..., 1, 1] - m[..., 0, 1] * m[..., 1, 0]
    root = torch.sqrt((trace**2 - 4 * det).to(torch.complex128))
    return torch.maximum((trace + root).abs(), (trace - root).abs()) / 2


def easgd_period_map(
    eta: Tensor | float, alpha: Tensor | float, *, tau: int, p: int, h: float = 1.0
) -> Tensor:
    """The full (p + 1) x (p + 1) map of one period on ``(x_1, ..., x_p, center)``.

    Built by the simulator itself: the p + 1 basis vectors are p + 1 independent directions
    of the quadratic, run for ``tau`` steps at once. Column j is the image of basis vector j.
    ``eta`` and ``alpha`` may be tensors of one shape S; the result is then (*S, p + 1, p + 1).
    """
    _check_tau_p(tau, p)
    eta, alpha = torch.broadcast_tensors(*_as_float64(eta, alpha))
    n = p + 1
    basis = torch.eye(n, dtype=torch.float64, device=eta.device).expand(*eta.shape, n, n)
    workers = basis[..., :p, :].movedim(-2, 0)  # (p, *S, n): worker i's value per direction
    center = basis[..., p, :]  # (*S, n)
    workers, center = simulate_easgd_quadratic(
        workers, center, lr=eta[..., None], alpha=alpha[..., None], tau=tau, steps=tau, h=h
    )
    return torch.cat([workers, center[None]]).movedim(0, -2)  # (*S, n, n)


# ---------------------------------------------------------------------------------------------
# ADMM in the round-robin scheme.
# ---------------------------------------------------------------------------------------------


def admm_sub_maps(
    eta: Tensor | float, rho: Tensor | float, p: int, worker: int
) -> tuple[Tensor, Tensor, Tensor]:
    r"""Worker i's three sub-updates :math:`F^i_1, F^i_2, F^i_3` as matrices (..., 2p+1, 2p+1).

    State order :math:`(\lambda_1, x_1, \dots, \lambda_p, x_p, \tilde x)`, F(x) = x^2/2; the
    entries are read off the update equations of the module docstring.
    """
    if p < 1:
        raise ValueError(f"Invalid p: {p} (must be >= 1)")
    if not 0 <= worker < p:
        raise ValueError(f"Invalid worker: {worker} (must be in [0, {p}))")
    eta, rho = torch.broadcast_tensors(*_as_float64(eta, rho))
    n, lam, x, c = 2 * p + 1, 2 * worker, 2 * worker + 1, 2 * p
    identity = torch.eye(n, dtype=torch.float64, device=eta.device).expand(*eta.shape, n, n)

    dual = identity.clone()  # lambda_i <- lambda_i - x_i + center
    dual[..., lam, x] = -1.0
    dual[..., lam, c] = 1.0

    # x_i <- ((1 - eta) x_i + eta rho (lambda_i + center)) / (1 + eta rho)
    primal = identity.clone()
    pull = eta * rho / (1 + eta * rho)
    primal[..., x, x] = (1 - eta) / (1 + eta * rho)
    primal[..., x, lam] = pull
    primal[..., x, c] = pull

    center = identity.clone()  # center <- mean_j (x_j - lambda_j)
    center[..., c, :] = 0.0
    center[..., c, 1:c:2] = 1.0 / p
    center[..., c, 0:c:2] = -1.0 / p
    return dual, primal, center


def admm_round_robin_map(eta: Tensor | float, rho: Tensor | float, p: int) -> Tensor:
    """One round of round-robin ADMM, :math:`F^p_3 F^p_2 F^p_1 \\cdots F^1_3 F^1_2 F^1_1`.

    Returns (..., 2p+1, 2p+1) for ``eta`` and ``rho`` broadcast against each other.
    """
    return _compose([sub for i in range(p) for sub in admm_sub_maps(eta, rho, p, i)])


def admm_spectral_radius(etas: Tensor, rhos: Tensor, *, p: int) -> Tensor:
    """Spectral radius of round-robin ADMM's map, ``(len(etas), len(rhos))``.

    Rows are eta and columns rho, as in the seed's figure (rho on the x axis).
    """
    return spectral_radius(admm_round_robin_map(etas[:, None], rhos[None, :], p))


def _admm_sub_maps_simulated(eta: float, rho: float, p: int, worker: int) -> list[Tensor]:
    """The same three matrices, by applying the simulator's sub-updates to the basis vectors.

    Used by the tests as the independent construction of `admm_sub_maps`.
    """
    n = 2 * p + 1
    basis = torch.eye(n, dtype=torch.float64)
    lambdas, workers, center = basis[0 : 2 * p : 2], basis[1 : 2 * p : 2], basis[2 * p]

    def state(lam: Tensor, x: Tensor, c: Tensor) -> Tensor:  # (2p + 1, n), interleaved
        return torch.cat([torch.stack([lam, x], dim=1).reshape(2 * p, n), c[None]])

    new_lambdas = admm_dual_step(lambdas, workers, center, worker=worker)
    new_workers = admm_worker_step(
        lambdas, workers, center, workers[worker], worker=worker, lr=eta, rho=rho
    )
    new_center = admm_center_step(lambdas, workers)
    return [
        state(new_lambdas, workers, center),
        state(lambdas, new_workers, center),
        state(lambdas, workers, new_center),
    ]


# ---------------------------------------------------------------------------------------------
# EASGD in the round-robin scheme: one worker's turn at a time.
# ---------------------------------------------------------------------------------------------


def easgd_turn_map(
    eta: Tensor | float, alpha: Tensor | float, p: int, worker: int, *, h: float = 1.0
) -> Tensor:
    r"""Worker i's turn of round-robin EASGD as a matrix (..., p + 1, p + 1).

    State order :math:`(x_1, \dots, x_p, \tilde x)`; worker i has curvature ``h``:
    :math:`x_i' = (1 - \eta h - \alpha) x_i + \alpha \tilde x`,
    :math:`\tilde x' = \alpha x_i + (1 - \alpha) \tilde x`, every other row the identity.
    """
    _check_tau_p(1, p)
    if not 0 <= worker < p:
        raise ValueError(f"Invalid worker: {worker} (must be in [0, {p}))")
    eta, alpha = torch.broadcast_tensors(*_as_float64(eta, alpha))
    n = p + 1
    turn = torch.eye(n, dtype=torch.float64, device=eta.device).expand(*eta.shape, n, n).clone()
    turn[..., worker, worker] = 1.0 - eta * h - alpha
    turn[..., worker, p] = alpha
    turn[..., p, worker] = alpha
    turn[..., p, p] = 1.0 - alpha
    return turn


def easgd_round_robin_map(
    eta: Tensor | float,
    alpha: Tensor | float,
    p: int,
    *,
    order: Sequence[int] | None = None,
    h: float | Sequence[float] = 1.0,
) -> Tensor:
    r"""One round, every worker one turn in ``order`` (default 0, 1, ..., p - 1).

    Returns :math:`F_{\sigma(p)} \cdots F_{\sigma(1)}` (..., p + 1, p + 1) of `easgd_turn_map`;
    ``h`` is one curvature for all workers or one per worker.
    """
    _check_tau_p(1, p)
    order = list(range(p)) if order is None else list(order)
    if sorted(order) != list(range(p)):
        raise ValueError(f"Invalid order: {order} (must be a permutation of 0..{p - 1})")
    curvatures = [float(h)] * p if isinstance(h, (int, float)) else [float(v) for v in h]
    if len(curvatures) != p:
        raise ValueError(f"Invalid h: {h} (one curvature, or one per worker: {p})")
    return _compose([easgd_turn_map(eta, alpha, p, i, h=curvatures[i]) for i in order])


def easgd_round_robin_radius(
    etas: Tensor, alphas: Tensor, *, p: int, h: float | Sequence[float] = 1.0
) -> Tensor:
    """Spectral radius of one round in the order 0..p-1, ``(len(alphas), len(etas))``.

    Rows alpha, columns eta, as `stability_map`; the order does not change it (module docstring).
    """
    return spectral_radius(easgd_round_robin_map(etas[None, :], alphas[:, None], p, h=h))


def round_robin_boundary(
    etas: Tensor, *, p: int, alphas: Tensor | None = None, h: float = 1.0, refine: int = 20
) -> Tensor:
    r"""For each :math:`\eta`, the smallest :math:`\alpha > 0` where a round stops contracting.

    First the grid ``alphas`` (default 401 points on [0, 2]) is searched for the first
    :math:`\alpha > 0` with radius >= 1; then ``refine`` bisection steps between it and the
    grid point before narrow it down (the stable set is an interval :math:`(0, \alpha^*)` for
    each :math:`\eta` on the grids we use; the tests check it). NaN where every grid
    :math:`\alpha` contracts. For p = 1 it is the curve :math:`(4 - 2\eta h)/(4 - \eta h)`.
    """
    if alphas is None:
        alphas = torch.linspace(0, 2, 401, dtype=torch.float64, device=etas.device)
    alphas = alphas[alphas > 0]
    unstable = easgd_round_robin_radius(etas, alphas, p=p, h=h) >= 1  # (A, E)
    first = unstable.double().argmax(dim=0)  # the first True in each column (0 if none)
    high = alphas[first].clone()
    low = torch.where(first > 0, alphas[(first - 1).clamp(min=0)], torch.zeros_like(high))
    for _ in range(refine):
        middle = (low + high) / 2
        stops = spectral_radius(easgd_round_robin_map(etas, middle, p, h=h)) >= 1
        high, low = torch.where(stops, middle, high), torch.where(stops, low, middle)
    high[~unstable.any(dim=0)] = math.nan
    return high


def order_radii(turns: Sequence[Tensor]) -> Tensor:
    """Spectral radius of one round for every order of the p turns, ``(..., p!)``.

    ``turns[i]`` is worker i's turn (..., n, n), e.g. `easgd_turn_map` or ADMM's
    ``F3 @ F2 @ F1`` from `admm_sub_maps`; the orders are those of ``itertools.permutations``.
    """
    return torch.stack(
        [
            spectral_radius(_compose([turns[i] for i in order]))
            for order in itertools.permutations(range(len(turns)))
        ],
        dim=-1,
    )


def schedule_growth(
    turns: Sequence[Tensor], orders: Sequence[Sequence[int]], *, start: Tensor | None = None
) -> float:
    r"""Mean growth factor per round of the state's norm when round k takes turns ``orders[k]``.

    The geometric mean over the rounds of :math:`\|s_{k+1}\| / \|s_k\|` (the state is rescaled
    after each round, so nothing overflows). For one fixed order repeated it tends to that
    round's spectral radius; with orders that change it is the growth of that schedule.
    ``start`` defaults to a seeded random vector (a symmetric start can miss a mode).
    """
    if not orders:
        raise ValueError("Invalid orders: empty (need at least one round)")
    n = turns[0].shape[-1]
    if start is None:
        start = torch.randn(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    state = start / start.norm()
    log_growth = 0.0
    for order in orders:
        for i in order:
            state = turns[i] @ state
        norm = state.norm()
        log_growth += math.log(norm.item())
        state = state / norm
    return math.exp(log_growth / len(orders))


def _compose(maps: Sequence[Tensor]) -> Tensor:
    # maps[0] acts first: the product maps[-1] @ ... @ maps[0]
    result = maps[0]
    for m in maps[1:]:
        result = m @ result
    return result


# ---------------------------------------------------------------------------------------------
# Helpers.
# ---------------------------------------------------------------------------------------------


def _check_tau_p(tau: int, p: int) -> None:
    if tau < 1:
        raise ValueError(f"Invalid tau: {tau} (must be >= 1)")
    if p < 1:
        raise ValueError(f"Invalid p: {p} (must be >= 1)")


def _as_float64(*values: Tensor | float) -> list[Tensor]:
    # float64 on the device of the first tensor given, so that a grid on a GPU stays there
    device = next((v.device for v in values if isinstance(v, Tensor)), None)
    return [torch.as_tensor(v, dtype=torch.float64, device=device) for v in values]
