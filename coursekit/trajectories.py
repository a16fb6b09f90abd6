r"""Trajectories of gradient descent on deep linear networks (lecture 9, seed 004).

A deep linear network :math:`y = W_N \cdots W_1 x` computes a linear map, the end-to-end matrix
:math:`W_e = W_{1:N} = W_N \cdots W_1` (`end_to_end`), so depth adds nothing to what it can
express; it changes how gradient descent moves. Arora, Cohen and Hazan (ICML 2018, "On the
optimization of deep networks: implicit acceleration by overparameterization") and Arora,
Cohen, Golowich and Hu (ICLR 2019, "A convergence analysis of gradient descent for deep linear
neural networks") follow the trajectory instead of the critical points:

- **balancedness** (`balancedness`): under gradient flow on the weights,
  :math:`W_{j+1}^\top W_{j+1} - W_j W_j^\top` is constant in time, so weights that start
  balanced stay balanced; gradient descent drifts by :math:`O(\eta^2)` per step;
- **end-to-end dynamics** (`preconditioner`, `end_to_end_step`): for balanced weights the
  end-to-end matrix follows
  :math:`\tfrac{d}{dt}\operatorname{vec}(W_e) = -P(W_e)\operatorname{vec}(\nabla\ell(W_e))` with
  :math:`P(W) = \sum_{j=1}^N (WW^\top)^{(j-1)/N} \otimes (W^\top W)^{(N-j)/N}`, positive
  definite when :math:`W` has full rank;
- **convergence** (`deficiency_margin`, `balanced_init`): for the :math:`\ell_2` loss on
  whitened inputs, gradient descent from a :math:`\delta`-balanced start with deficiency margin
  :math:`c > 0` reaches the global minimum at a linear rate (Arora et al. 2019, Theorem 1);
- **acceleration by depth** (`lp_loss`, `depth_run`, `acceleration_by_depth`): on
  :math:`\ell_p` losses with :math:`p > 2` the end-to-end update can be faster than gradient
  descent on a single matrix (Arora et al. 2018; an empirical claim there, measured here).

Conventions: ``weights[j]`` has shape :math:`(d_{j+1}, d_j)` as `nn.Linear` stores it and as
`coursekit.models.DeepLinear.layers` hold it; ``vec`` is row-major (``tensor.reshape(-1)``),
under which :math:`\operatorname{vec}(A X B) = (A \otimes B^\top)\operatorname{vec}(X)`.
Everything works in the weights' dtype and device; float64 is what the lecture uses.

Example::

    import torch
    from coursekit import trajectories as tr

    g = torch.Generator().manual_seed(0)
    weights = tr.balanced_init([3, 4, 4, 2], scale=1.0, generator=g)
    tr.balancedness(weights)                    # ~1e-16, 1e-16: balanced
    target = torch.eye(2, 3, dtype=torch.float64)
    later = tr.gradient_flow(weights, tr.whitened_l2_loss(target), 1.0)
    tr.balancedness(later)                      # still ~0 (to the integrator's tolerance)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.integrate import solve_ivp
from torch import Tensor

from coursekit._checks import count as _check_count
from coursekit._checks import nonnegative as _check_nonnegative
from coursekit._checks import positive as _check_positive

__all__ = [
    "DepthRun",
    "acceleration_by_depth",
    "balanced_factors",
    "balanced_init",
    "balancedness",
    "deficiency_margin",
    "depth_run",
    "end_to_end",
    "end_to_end_descent",
    "end_to_end_step",
    "flow_trajectory",
    "gradient_descent",
    "gradient_flow",
    "lp_loss",
    "matrix_power_psd",
    "preconditioner",
    "steps_to_threshold",
    "whitened_l2_loss",
]

LossFn = Callable[[Tensor], Tensor]


def _check_weights(weights: Sequence[Tensor]) -> list[Tensor]:
    weights = list(weights)
    if not weights:
        raise ValueError("Invalid weights: [] (must hold at least one matrix)")
    for j, (before, after) in enumerate(zip(weights[:-1], weights[1:])):
        if before.dim() != 2 or after.dim() != 2 or after.shape[1] != before.shape[0]:
            raise ValueError(
                f"Invalid weights: layer {j + 1} has shape {tuple(after.shape)} after "
                f"{tuple(before.shape)} (weights[j] must be (d_(j+1), d_j))"
            )
    if weights[0].dim() != 2:
        raise ValueError(f"Invalid weights: shape {tuple(weights[0].shape)} (must be matrices)")
    return weights


def _check_matrix(name: str, matrix: Tensor) -> None:
    if matrix.dim() != 2:
        raise ValueError(f"Invalid {name}: shape {tuple(matrix.shape)} (must be a matrix)")


# --- the network as a product ------------------------------------------------------------------


def end_to_end(weights: Sequence[Tensor]) -> Tensor:
    r"""The end-to-end matrix :math:`W_{1:N} = W_N \cdots W_1`, shape :math:`(d_N, d_0)`.

    ``weights[j]`` is :math:`W_{j+1}`, shape :math:`(d_{j+1}, d_j)`; differentiable.
    """
    weights = _check_weights(weights)
    product = weights[0]
    for w in weights[1:]:
        product = w @ product  # (d_{j+1}, d_j) @ (d_j, d_0)
    return product


def balancedness(weights: Sequence[Tensor]) -> Tensor:
    r""":math:`\|W_{j+1}^\top W_{j+1} - W_j W_j^\top\|_F` for :math:`j = 1, \dots, N-1`.

    Weights are *balanced* when every entry is 0 and :math:`\delta`-balanced when every entry
    is at most :math:`\delta` (Arora et al. 2019, Definition 1). Shape ``(N - 1,)``; the same
    quantity as `coursekit.models.DeepLinear.balancedness`.
    """
    weights = _check_weights(weights)
    gaps = [
        torch.linalg.matrix_norm(after.T @ after - before @ before.T)
        for before, after in zip(weights[:-1], weights[1:])
    ]
    return torch.stack(gaps) if gaps else weights[0].new_zeros(0)


# --- balanced initialisation --------------------------------------------------------------------


def _check_widths(widths: Sequence[int]) -> list[int]:
    widths = [int(w) for w in widths]
    if len(widths) < 2 or min(widths) < 1:
        raise ValueError(f"Invalid widths: {widths!r} (must be at least two sizes, each >= 1)")
    rank = min(widths[0], widths[-1])
    if min(widths[1:-1], default=rank) < rank:
        raise ValueError(
            f"Invalid widths: {widths!r} (hidden widths must be >= min(d_0, d_N) = {rank})"
        )
    return widths


def _random_rotation(n: int, generator, dtype, device) -> Tensor:
    """A Haar-random orthogonal ``(n, n)`` matrix (QR of a Gaussian, signs fixed)."""
    q, r = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=dtype).to(device))
    return q * torch.sign(torch.diagonal(r))


def balanced_factors(
    w_e: Tensor,
    widths: Sequence[int],
    *,
    rotate: bool = True,
    generator: torch.Generator | None = None,
) -> list[Tensor]:
    r"""Exactly balanced weights whose product is `w_e` (Arora et al. 2019, Procedure 1).

    With the thin SVD :math:`W_e = U \Sigma V^\top` (:math:`r = \min(d_0, d_N)` singular values)
    the layers are :math:`W_N \simeq U\Sigma^{1/N}`, :math:`W_j \simeq \Sigma^{1/N}` for
    :math:`1 < j < N` and :math:`W_1 \simeq \Sigma^{1/N} V^\top`, where :math:`\simeq` pads with
    zeros to the layer's shape. Then :math:`W_{j+1}^\top W_{j+1} = W_j W_j^\top` (both are
    :math:`\Sigma^{2/N}`, padded). With `rotate`, every hidden space is then turned by a
    random rotation :math:`O_j` (:math:`W_j \to O_j W_j O_{j-1}^\top`), which keeps both the
    product and the balance, so the zero padding is not visible in the weights.

    Args:
        w_e: the end-to-end matrix, shape :math:`(d_N, d_0)`.
        widths: :math:`(d_0, d_1, \dots, d_N)`; hidden widths at least :math:`\min(d_0, d_N)`.
        rotate: turn the hidden spaces by random rotations (default True; False gives the
            padded form above).
        generator: draws the rotations (default: torch's global generator).
    """
    _check_matrix("w_e", w_e)
    widths = _check_widths(widths)
    if tuple(w_e.shape) != (widths[-1], widths[0]):
        raise ValueError(
            f"Invalid w_e: shape {tuple(w_e.shape)} (must be (d_N, d_0) = "
            f"{(widths[-1], widths[0])})"
        )
    depth = len(widths) - 1
    if depth == 1:
        return [w_e.clone()]
    u, s, vh = torch.linalg.svd(w_e, full_matrices=False)  # (d_N, r), (r,), (r, d_0)
    root = torch.diag(s ** (1.0 / depth))  # Sigma^{1/N}, (r, r)
    r = len(s)
    weights = []
    for j in range(depth):
        d_in, d_out = widths[j], widths[j + 1]
        w = w_e.new_zeros(d_out, d_in)
        if j == 0:
            w[:r, :] = root @ vh
        elif j == depth - 1:
            w[:, :r] = u @ root
        else:
            w[:r, :r] = root
        weights.append(w)
    if rotate:
        rotations = [_random_rotation(d, generator, w_e.dtype, w_e.device) for d in widths[1:-1]]
        for j in range(depth):
            if j < depth - 1:
                weights[j] = rotations[j] @ weights[j]
            if j > 0:
                weights[j] = weights[j] @ rotations[j - 1].T
    return weights


def _perturb_to_delta(
    weights: list[Tensor], delta: float, generator: torch.Generator | None
) -> list[Tensor]:
    """Add ``t * E_j`` (``E_j`` Gaussian, unit Frobenius norm) with the largest ``t`` found by
    doubling then bisection for which the maximal balancedness stays <= `delta`."""
    noise = []
    for w in weights:
        e = torch.randn(w.shape, generator=generator, dtype=w.dtype).to(w.device)
        noise.append(e / torch.linalg.matrix_norm(e))

    def gap(t: float) -> float:
        return float(balancedness([w + t * e for w, e in zip(weights, noise)]).max())

    low, high = 0.0, delta
    for _ in range(200):  # grow until the gap passes delta
        if gap(high) > delta:
            break
        low, high = high, 2 * high
    else:
        raise ValueError(f"Invalid delta: {delta!r} (no perturbation reaches it)")
    for _ in range(100):
        middle = 0.5 * (low + high)
        if gap(middle) <= delta:
            low = middle
        else:
            high = middle
    return [w + low * e for w, e in zip(weights, noise)]


def balanced_init(
    widths: Sequence[int],
    *,
    scale: float,
    delta: float = 0.0,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> list[Tensor]:
    r"""A random :math:`\delta`-balanced initialisation of any depth (Arora et al. 2019, Proc. 1).

    Draws the end-to-end matrix :math:`A` with i.i.d. :math:`\mathcal N(0, \text{scale}^2/d_0)`
    entries (so :math:`\|Ax\| \approx \text{scale}\,\|x\|`), splits it into balanced factors
    with `balanced_factors` (random rotations of the hidden spaces included), and, with
    ``delta > 0``, adds a random perturbation to every layer, as large as it can be while the
    largest `balancedness` stays at most `delta` (it ends within bisection accuracy of `delta`).
    With ``delta = 0`` the weights are balanced to rounding.

    Args:
        widths: :math:`(d_0, d_1, \dots, d_N)`; hidden widths at least :math:`\min(d_0, d_N)`.
        scale: the end-to-end matrix's typical gain (> 0).
        delta: the balancedness allowed (>= 0; default 0).
        generator: all randomness (default: torch's global generator).
        dtype: of the weights (default float64).

    Returns:
        ``[W_1, ..., W_N]``, ``W_j`` of shape ``(widths[j], widths[j - 1])``.
    """
    widths = _check_widths(widths)
    _check_positive("scale", scale)
    _check_nonnegative("delta", delta)
    a = torch.randn(widths[-1], widths[0], generator=generator, dtype=dtype)
    a = a * (scale / math.sqrt(widths[0]))
    weights = balanced_factors(a, widths, generator=generator)
    if delta > 0 and len(weights) > 1:
        weights = _perturb_to_delta(weights, delta, generator)
    return weights


# --- l2 regression on whitened inputs: the deficiency margin -----------------------------------


def whitened_l2_loss(target: Tensor) -> LossFn:
    r"""The :math:`\ell_2` loss on whitened inputs as a function of the end-to-end matrix.

    With inputs whose second-moment matrix is the identity, :math:`\frac1m \sum_i x_i x_i^\top =
    I`, the loss :math:`\frac1{2m}\sum_i \|W x_i - y_i\|^2` equals
    :math:`\tfrac12 \|W - \Phi\|_F^2` plus a constant, with :math:`\Phi = \frac1m \sum_i y_i
    x_i^\top` (Arora et al. 2019, section 3). Returns :math:`W \mapsto \tfrac12\|W - \Phi\|_F^2`
    (for ``(..., d_out, d_in)`` batches of matrices, one loss each).
    """
    _check_matrix("target", target)

    def loss(w: Tensor) -> Tensor:
        return 0.5 * ((w - target) ** 2).sum(dim=(-2, -1))  # one loss per matrix of a batch

    return loss


def deficiency_margin(w_e: Tensor, target: Tensor) -> float:
    r"""The deficiency margin :math:`c = \sigma_{\min}(\Phi) - \|W_e - \Phi\|_F`.

    For the loss `whitened_l2_loss`, :math:`\ell(W) = \tfrac12\|W - \Phi\|_F^2`, a positive
    :math:`c` means :math:`\ell(W_e) \le \ell(W)` for every :math:`W` with
    :math:`\sigma_{\min}(W) \le c` (Arora et al. 2019, Definition 2 and Claim 1): by Weyl's
    inequality :math:`\|W - \Phi\|_F \ge \sigma_{\min}(\Phi) - \sigma_{\min}(W) \ge
    \|W_e - \Phi\|_F`. :math:`\sigma_{\min}` is the :math:`\min(d_{out}, d_{in})`-th singular
    value. Negative values mean no margin.
    """
    _check_matrix("w_e", w_e)
    _check_matrix("target", target)
    if w_e.shape != target.shape:
        raise ValueError(
            f"Invalid w_e: shape {tuple(w_e.shape)} (must match target {tuple(target.shape)})"
        )
    sigma_min = torch.linalg.svdvals(target)[-1]
    return float(sigma_min - torch.linalg.matrix_norm(w_e - target))


# --- the end-to-end dynamics ---------------------------------------------------------------------


def matrix_power_psd(matrix: Tensor, power: float) -> Tensor:
    r""":math:`M^p` of a symmetric positive semi-definite :math:`M` through `torch.linalg.eigh`.

    Eigenvalues below :math:`n\,\epsilon\,\lambda_{\max}` (rounding noise of a zero
    eigenvalue, which a small power such as 1/4 would blow up to :math:`10^{-4}`) count as zero;
    :math:`M^0 = I` even where :math:`M` is singular (the convention the end-to-end formulas
    need).
    """
    _check_matrix("matrix", matrix)
    _check_nonnegative("power", power)
    n = matrix.shape[0]
    if power == 0:
        return torch.eye(n, dtype=matrix.dtype, device=matrix.device)
    eigenvalues, vectors = torch.linalg.eigh(0.5 * (matrix + matrix.T))
    cutoff = n * torch.finfo(matrix.dtype).eps * eigenvalues.abs().max()
    eigenvalues = torch.where(eigenvalues > cutoff, eigenvalues, torch.zeros_like(eigenvalues))
    return (vectors * eigenvalues**power) @ vectors.T


def _check_depth(depth: int) -> None:
    _check_count("depth", depth)


def preconditioner(w_e: Tensor, depth: int) -> Tensor:
    r"""The matrix :math:`P(W)` of the end-to-end dynamics (Arora et al. 2018, Theorem 1).

    .. math::
        P(W) = \sum_{j=1}^{N} (W W^\top)^{\frac{j-1}{N}} \otimes (W^\top W)^{\frac{N-j}{N}},

    shape :math:`(d_{out} d_{in}, d_{out} d_{in})`, symmetric positive semi-definite (positive
    definite when :math:`W` has full rank). It acts on **row-major** vectorisations
    (``tensor.reshape(-1)``): ``P @ grad.reshape(-1)`` is the `end_to_end_step` direction
    :math:`\sum_j (WW^\top)^{(j-1)/N}\, G\, (W^\top W)^{(N-j)/N}`, flattened. (The paper's
    column-major convention swaps the factors of each Kronecker product.) Fractional powers
    come from eigendecompositions (`matrix_power_psd`).
    """
    _check_matrix("w_e", w_e)
    _check_depth(depth)
    left, right = w_e @ w_e.T, w_e.T @ w_e  # (d_out, d_out), (d_in, d_in)
    return sum(
        torch.kron(
            matrix_power_psd(left, (j - 1) / depth), matrix_power_psd(right, (depth - j) / depth)
        )
        for j in range(1, depth + 1)
    )


def _svd_power(factor: Tensor, s: Tensor, power: float, n: int) -> Tensor:
    """``(factor diag(s^2) factor^T)^power`` from a (batched) SVD factor; the identity at 0."""
    if power == 0:
        return torch.eye(n, dtype=s.dtype, device=s.device).expand(*s.shape[:-1], n, n)
    return (factor * (s**2).unsqueeze(-2) ** power) @ factor.mT  # U S^{2q} U^T


def _end_to_end_direction(w_e: Tensor, grad: Tensor, depth: int) -> Tensor:
    r""":math:`\sum_j (WW^\top)^{(j-1)/N} G (W^\top W)^{(N-j)/N}` from one (batched) thin SVD
    :math:`W = U S V^\top`: :math:`(WW^\top)^q = U S^{2q} U^\top` and
    :math:`(W^\top W)^q = V S^{2q} V^\top` for :math:`q > 0`; singular values below
    :math:`\max(d_{out}, d_{in})\,\epsilon\,s_{\max}` count as zero (as in `matrix_power_psd`)."""
    if depth == 1:
        return grad
    # u: (..., d_out, r), s: (..., r), vh: (..., r, d_in)
    u, s, vh = torch.linalg.svd(w_e, full_matrices=False)
    cutoff = max(w_e.shape[-2:]) * torch.finfo(s.dtype).eps * s.amax(dim=-1, keepdim=True)
    s = torch.where(s > cutoff, s, torch.zeros_like(s))
    v = vh.mT
    d_out, d_in = w_e.shape[-2:]
    return sum(
        _svd_power(u, s, (j - 1) / depth, d_out)
        @ grad
        @ _svd_power(v, s, (depth - j) / depth, d_in)
        for j in range(1, depth + 1)
    )


def end_to_end_step(w_e: Tensor, grad: Tensor, lr: float, depth: int) -> Tensor:
    r"""One step of the discrete end-to-end dynamics (Arora et al. 2018, eq. 8):

    .. math::
        W_e \leftarrow W_e - \eta \sum_{j=1}^{N} (W_e W_e^\top)^{\frac{j-1}{N}}\,
        \nabla\ell(W_e)\,(W_e^\top W_e)^{\frac{N-j}{N}}.

    Args:
        w_e: the end-to-end matrix :math:`(d_{out}, d_{in})`.
        grad: :math:`\nabla\ell(W_e)`, same shape.
        lr: :math:`\eta` (> 0).
        depth: :math:`N` (>= 1; depth 1 is plain gradient descent).

    Returns:
        The new end-to-end matrix. For balanced weights it agrees with the product after one
        gradient-descent step on the weights up to :math:`O(\eta^2)`.
    """
    _check_matrix("w_e", w_e)
    if grad.shape != w_e.shape:
        raise ValueError(
            f"Invalid grad: shape {tuple(grad.shape)} (must match w_e {tuple(w_e.shape)})"
        )
    _check_positive("lr", lr)
    _check_depth(depth)
    return w_e - lr * _end_to_end_direction(w_e, grad, depth)


# --- gradient flow and gradient descent on the weights -----------------------------------------


def _weight_gradients(weights: Sequence[Tensor], loss_fn: LossFn) -> tuple[Tensor, list[Tensor]]:
    """The loss at ``end_to_end(weights)`` and its gradients with respect to every layer."""
    leaves = [w.detach().requires_grad_(True) for w in weights]
    with torch.enable_grad():
        loss = loss_fn(end_to_end(leaves))
        grads = torch.autograd.grad(loss, leaves)
    return loss.detach(), list(grads)


def flow_trajectory(
    weights: Sequence[Tensor],
    loss_fn: LossFn,
    times: Sequence[float],
    *,
    rtol: float = 1e-10,
    atol: float = 1e-12,
) -> list[list[Tensor]]:
    r"""The weights' gradient flow :math:`\dot W_j = -\partial L/\partial W_j` at several times.

    :math:`L(W_1, \dots, W_N) = \ell(W_N \cdots W_1)` with ``loss_fn`` :math:`= \ell`; the
    weights are flattened into one vector and integrated by `scipy.integrate.solve_ivp`
    (DOP853, an explicit Runge-Kutta method of order 8) with the gradients from autograd, in
    float64 on the CPU; the results come back in the weights' dtype and device.

    Args:
        weights: the start, ``[W_1, ..., W_N]``.
        loss_fn: maps the end-to-end matrix to a scalar.
        times: increasing times >= 0 at which to report the weights.
        rtol, atol: the integrator's tolerances.

    Returns:
        One list of weights per time.
    """
    weights = _check_weights(weights)
    times = [float(t) for t in times]
    if not times or min(times) < 0 or any(b < a for a, b in zip(times[:-1], times[1:])):
        raise ValueError(f"Invalid times: {times!r} (must be increasing and >= 0)")
    _check_positive("rtol", rtol)
    _check_positive("atol", atol)
    shapes = [tuple(w.shape) for w in weights]
    sizes = [math.prod(s) for s in shapes]
    start = np.concatenate([w.detach().cpu().double().reshape(-1).numpy() for w in weights])

    def unflatten(flat: Tensor) -> list[Tensor]:
        return [part.reshape(s) for part, s in zip(torch.split(flat, sizes), shapes)]

    def rhs(_t: float, y: np.ndarray) -> np.ndarray:
        _, grads = _weight_gradients(unflatten(torch.from_numpy(y)), loss_fn)
        return -torch.cat([g.reshape(-1) for g in grads]).numpy()

    if times[-1] == 0:
        states = [start for _ in times]
    else:
        solution = solve_ivp(
            rhs, (0.0, times[-1]), start, method="DOP853", t_eval=times, rtol=rtol, atol=atol
        )
        if not solution.success:
            raise RuntimeError(f"gradient_flow: the integrator failed: {solution.message}")
        states = list(solution.y.T)
    like = weights[0]
    return [
        [w.to(dtype=like.dtype, device=like.device) for w in unflatten(torch.from_numpy(s))]
        for s in states
    ]


def gradient_flow(
    weights: Sequence[Tensor],
    loss_fn: LossFn,
    t: float,
    *,
    rtol: float = 1e-10,
    atol: float = 1e-12,
) -> list[Tensor]:
    r"""The weights after time `t` of gradient flow :math:`\dot W_j = -\partial L/\partial W_j`.

    :math:`L = \ell(W_N \cdots W_1)` with ``loss_fn`` :math:`= \ell`, integrated accurately by
    `flow_trajectory` (DOP853 with tolerances `rtol`, `atol`). Gradient flow is gradient
    descent's limit as the learning rate goes to zero (seed 004); along it balancedness is
    exactly conserved (Arora et al. 2018, Theorem 1).
    """
    _check_nonnegative("t", t)
    return flow_trajectory(weights, loss_fn, [t], rtol=rtol, atol=atol)[0]


def gradient_descent(
    weights: Sequence[Tensor], loss_fn: LossFn, lr: float, steps: int
) -> list[list[Tensor]]:
    r"""Full-batch gradient descent on the weights, :math:`W_j \leftarrow W_j - \eta\,\partial
    L/\partial W_j` with :math:`L = \ell(W_N\cdots W_1)`.

    Returns ``steps + 1`` lists of weights: the start, then the weights after each step
    (detached copies; map `end_to_end` over them for the end-to-end trajectory). A run that
    diverges (the loss turns non-finite) ends at the last finite step, with a shorter list.
    """
    weights = _check_weights(weights)
    _check_positive("lr", lr)
    _check_count("steps", steps, minimum=0)
    current = [w.detach().clone() for w in weights]
    path = [current]
    for _ in range(steps):
        _, grads = _weight_gradients(current, loss_fn)
        current = [w - lr * g for w, g in zip(current, grads)]
        if not bool(torch.isfinite(loss_fn(end_to_end(current)))):
            break  # diverged: the weights, their product or the loss overflowed
        path.append(current)
    return path


# --- l_p regression and acceleration by depth ---------------------------------------------------


def lp_loss(x: Tensor, y: Tensor, p: float = 4.0) -> LossFn:
    r"""The :math:`\ell_p` regression loss of a linear map, as a function of its matrix.

    .. math::
        \ell(W) = \frac{1}{p\,m} \sum_{i=1}^m \|W x_i - y_i\|_p^p

    (seed 004 writes it without the :math:`1/p`, which only rescales the learning rate). Inputs
    ``x`` are ``(m, d_in)`` and targets ``y`` ``(m, d_out)`` as `coursekit.data.regression`
    returns them; :math:`W` is ``(d_out, d_in)``, or ``(..., d_out, d_in)`` for a batch of
    matrices (one loss each). Convex for :math:`p \ge 1`; :math:`p = 2` is the squared loss.
    """
    _check_matrix("x", x)
    _check_matrix("y", y)
    if len(x) != len(y):
        raise ValueError(f"Invalid y: {len(y)} rows (must match x's {len(x)})")
    if not p >= 1:
        raise ValueError(f"Invalid p: {p!r} (must be >= 1)")

    def loss(w: Tensor) -> Tensor:
        residual = x @ w.mT - y  # (..., m, d_out)
        return residual.abs().pow(p).sum(dim=(-2, -1)) / (p * len(x))

    return loss


def steps_to_threshold(losses: Tensor | Sequence[float], threshold: float) -> int | None:
    """The first step at which the loss is at most `threshold`, or None if it never is."""
    losses = torch.as_tensor(losses)
    hits = torch.nonzero(losses <= threshold)
    return int(hits[0]) if len(hits) else None


def _product(weights: Sequence[Tensor]) -> Tensor:
    """`end_to_end` without the checks, for batched weights ``(L, d_{j+1}, d_j)``."""
    product = weights[0]
    for w in weights[1:]:
        product = w @ product
    return product


def _curves(
    weights: Sequence[Tensor],
    loss_fn: LossFn,
    lrs: Sequence[float],
    steps: int,
    dynamics: str,
    threshold: float | None = None,
) -> Tensor:
    """Loss curves ``(len(lrs), steps + 1)`` of one dynamics from the same start, all learning
    rates advanced together as one batch. A run whose loss turns non-finite or exceeds 1e6
    times the start has diverged (inf from then on); with a `threshold`, all runs stop once
    each has reached it or diverged (the entries not computed are nan)."""
    if dynamics not in ("weights", "end_to_end"):
        raise ValueError(f"Invalid dynamics: {dynamics!r} (must be 'weights' or 'end_to_end')")
    for lr in lrs:
        _check_positive("lr", lr)
    _check_count("steps", steps, minimum=0)
    depth = len(weights)
    like = weights[0]
    n = len(lrs)
    lr = torch.tensor(lrs, dtype=like.dtype, device=like.device).reshape(n, 1, 1)
    current = [w.detach().expand(n, *w.shape).clone() for w in weights]  # (L, d_{j+1}, d_j)
    w_e = _product(current)
    with torch.no_grad():
        first = float(loss_fn(w_e[0]))
    blow_up = 1e6 * max(first, 1e-300)
    losses = torch.full((n, steps + 1), math.nan, dtype=torch.float64)
    losses[:, 0] = first
    diverged = torch.zeros(n, dtype=torch.bool)
    reached = torch.zeros(n, dtype=torch.bool)
    for k in range(1, steps + 1):
        if dynamics == "weights":
            leaves = [w.requires_grad_(True) for w in current]
            with torch.enable_grad():
                grads = torch.autograd.grad(loss_fn(_product(leaves)).sum(), leaves)
            current = [(w - lr * g).detach() for w, g in zip(current, grads)]
            w_e = _product(current)
        else:
            leaf = w_e.detach().requires_grad_(True)
            with torch.enable_grad():
                (grad,) = torch.autograd.grad(loss_fn(leaf).sum(), leaf)
            w_e = w_e - lr * _end_to_end_direction(w_e, grad, depth)
        with torch.no_grad():
            value = loss_fn(w_e).to(device="cpu", dtype=torch.float64)
        diverged |= ~torch.isfinite(value) | (value > blow_up)
        value[diverged] = math.inf
        losses[:, k] = value
        if diverged.any():  # keep the diverged runs finite and harmless
            keep = (~diverged).to(like.device).reshape(n, 1, 1)
            current = [torch.where(keep, w, torch.zeros_like(w)) for w in current]
            w_e = torch.where(keep, w_e, torch.zeros_like(w_e))
        if threshold is not None:
            reached |= value <= threshold
            if bool((reached | diverged).all()):
                break
    return losses


def depth_run(
    weights: Sequence[Tensor],
    loss_fn: LossFn,
    lr: float,
    steps: int,
    *,
    dynamics: str = "weights",
) -> Tensor:
    r"""The loss along `steps` steps of one of the two discrete dynamics, from `weights`.

    ``dynamics="weights"``: gradient descent on the weights (as `gradient_descent`, storing
    losses only). ``dynamics="end_to_end"``: the discrete end-to-end dynamics
    (`end_to_end_step` with depth ``len(weights)``) from ``end_to_end(weights)``.

    Returns ``(steps + 1,)`` float64 losses, the start included; a loss that becomes non-finite
    or exceeds 1e6 times the starting loss counts as divergence and it and all later entries
    are ``inf``. `loss_fn` must accept a batch of matrices ``(1, d_out, d_in)`` (as `lp_loss`
    and `whitened_l2_loss` do).
    """
    weights = _check_weights(weights)
    return _curves(weights, loss_fn, [float(lr)], steps, dynamics)[0]


def end_to_end_descent(
    w_e: Tensor, loss_fn: LossFn, lr: float, steps: int, depth: int
) -> list[Tensor]:
    """The end-to-end matrices of `steps` steps of `end_to_end_step` (the start included)."""
    _check_matrix("w_e", w_e)
    _check_count("steps", steps, minimum=0)
    path = [w_e.detach().clone()]
    for _ in range(steps):
        _, (grad,) = _weight_gradients([path[-1]], loss_fn)
        path.append(end_to_end_step(path[-1], grad, lr, depth))
    return path


@dataclass
class DepthRun:
    """One depth's outcome in `acceleration_by_depth`.

    Attributes:
        depth: number of layers.
        dynamics: "weights" or "end_to_end".
        lrs: the learning-rate grid.
        steps_by_lr: steps to the threshold for each learning rate (None: not reached).
        best_lr: the grid's learning rate that reaches the threshold first (None: none does).
        steps: the steps to the threshold at `best_lr` (None: not reached).
        losses: the loss curve at `best_lr` (at the grid's smallest lr if none reaches it);
            nan after the experiment stopped (every rate reached the threshold or diverged).
        curves: every learning rate's loss curve, ``(len(lrs), steps + 1)``.
    """

    depth: int
    dynamics: str
    lrs: list[float]
    steps_by_lr: list[int | None]
    best_lr: float | None
    steps: int | None
    losses: Tensor
    curves: Tensor

    def fastest(self, threshold: float) -> tuple[float | None, int | None]:
        """``(best_lr, steps)`` for another `threshold`, read off `curves`; exact for
        thresholds at or above the run's own (below it the curves may have stopped early)."""
        hits = [steps_to_threshold(c, threshold) for c in self.curves]
        reached = [(h, i) for i, h in enumerate(hits) if h is not None]
        if not reached:
            return None, None
        steps, best = min(reached)
        return self.lrs[best], steps


def acceleration_by_depth(
    x: Tensor,
    y: Tensor,
    *,
    depths: Sequence[int] = (1, 2, 3),
    lrs: Sequence[float],
    steps: int,
    threshold: float,
    p: float = 4.0,
    hidden: int | None = None,
    init_scale: float = 0.1,
    dynamics: str = "weights",
    seed: int = 0,
) -> list[DepthRun]:
    r"""Steps to reach a loss threshold by depth, each depth at its best learning rate of one grid.

    The experiment behind Arora, Cohen and Hazan's (2018) "acceleration by depth": the
    :math:`\ell_p` loss (`lp_loss`) of linear networks of several depths, all started from the
    same end-to-end matrix :math:`A` (i.i.d. :math:`\mathcal N(0, \text{init\_scale}^2/d_{in})`
    entries drawn from `seed`) split into exactly balanced factors with random hidden rotations
    (`balanced_factors`), each trained with every learning rate of `lrs` for at most `steps`
    full-batch steps (`depth_run`, all rates of a depth as one batch, stopped once every rate
    has reached the threshold or diverged); a depth's result is its fastest learning rate.

    Args:
        x, y: inputs ``(m, d_in)`` and targets ``(m, d_out)``.
        depths: the depths compared (depth 1 is gradient descent on :math:`W` itself).
        lrs: the learning-rate grid shared by all depths.
        steps: the step budget.
        threshold: the loss to reach.
        p: the loss exponent (default 4, as in the paper's experiment).
        hidden: hidden width (default :math:`d_{in}`).
        init_scale: the starting end-to-end matrix's scale.
        dynamics: "weights" (gradient descent on the network) or "end_to_end" (the discrete
            end-to-end dynamics of each depth).
        seed: draws :math:`A` and the rotations.
    """
    _check_matrix("x", x)
    _check_matrix("y", y)
    lrs = [float(lr) for lr in lrs]
    if not lrs:
        raise ValueError("Invalid lrs: [] (must hold at least one learning rate)")
    _check_positive("threshold", threshold)
    _check_positive("init_scale", init_scale)
    d_in, d_out = x.shape[1], y.shape[1]
    hidden = d_in if hidden is None else int(hidden)
    loss_fn = lp_loss(x, y, p)
    generator = torch.Generator().manual_seed(seed)
    a = torch.randn(d_out, d_in, generator=generator, dtype=torch.float64)
    a = (a * (init_scale / math.sqrt(d_in))).to(dtype=x.dtype, device=x.device)
    runs = []
    for depth in depths:
        _check_depth(depth)
        widths = [d_in] + [hidden] * (depth - 1) + [d_out]
        start = balanced_factors(
            a, widths, generator=torch.Generator().manual_seed(seed + 1000 * depth)
        )
        curves = _curves(start, loss_fn, lrs, steps, dynamics, threshold)
        hits = [steps_to_threshold(c, threshold) for c in curves]
        reached = [(h, i) for i, h in enumerate(hits) if h is not None]
        best = min(reached)[1] if reached else None
        runs.append(
            DepthRun(
                depth=depth,
                dynamics=dynamics,
                lrs=lrs,
                steps_by_lr=hits,
                best_lr=None if best is None else lrs[best],
                steps=None if best is None else hits[best],
                losses=curves[0 if best is None else best],
                curves=curves,
            )
        )
    return runs
