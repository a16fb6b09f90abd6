r"""The curvature of a loss: Hessian-vector products, eigenvalues, trace, spectral density, index.

Everything here looks at a model through a closure ``loss_fn(model) -> scalar tensor`` and treats
the parameters that require grad, in the order of ``model.parameters()``, as one flat vector
:math:`\theta \in \mathbb{R}^n`. The Hessian is :math:`H = \nabla^2 L(\theta)`; it is never
formed except by `hessian` (and `index` on small models). Every other function only needs the
product

.. math::
    H v = \nabla_\theta \big( \nabla_\theta L(\theta)^\top v \big),

which costs about as much as two gradients and no :math:`n \times n` memory. From products we get
the outliers of the spectrum (`top_eigenvalues`), its sum :math:`\mathrm{tr}\, H`
(`hutchinson_trace`) and its shape (`spectral_density`). At a critical point
(:math:`\nabla L = 0`) the number of negative eigenvalues, the *index* (`index`), says what kind
of point it is: 0 for a minimum, between 1 and :math:`n - 1` for a saddle (seed 001: at a random
critical point of a large network almost all are saddles). `find_critical_point` searches for
such points, saddles included, by minimising :math:`\tfrac12 \|\nabla L\|^2`;
`newton_critical_point` does it on small models by damped Newton steps, and
`smallest_eigenvalues` finds directions of negative curvature.

Tensors that live in parameter space (vectors, eigenvectors) and returned eigenvalues and
densities take the model's device and dtype; inputs are moved there. Random numbers come from
``generator`` (a CPU ``torch.Generator``) or, when None, torch's global generator, so a seeded run
gives the same numbers on every device. Nothing here touches the parameters' ``.grad``, except
`find_critical_point`, which moves the parameters.

Example::

    import torch
    from torch import nn
    from coursekit import curvature

    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1)).double()
    x, y = torch.randn(32, 4, dtype=torch.float64), torch.randn(32, 1, dtype=torch.float64)
    loss_fn = lambda m: nn.functional.mse_loss(m(x), y)
    values, vectors = curvature.top_eigenvalues(model, loss_fn, k=3)  # (3,), (n, 3)
    trace, stderr = curvature.hutchinson_trace(model, loss_fn, samples=200)
    grid, density = curvature.spectral_density(model, loss_fn)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator, eigsh
from torch import Tensor, nn

__all__ = [
    "CriticalPoint",
    "find_critical_point",
    "hessian",
    "hutchinson_trace",
    "hvp",
    "index",
    "loss_hvp",
    "newton_critical_point",
    "smallest_eigenvalues",
    "spectral_density",
    "top_eigenvalues",
]

LossFn = Callable[[nn.Module], Tensor]
_Operator = Callable[[Tensor], Tensor]  # flat v (n,) -> H v (n,)


# --- Validation -----------------------------------------------------------------------------


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _check_tol_or_none(tol: object) -> None:
    if tol is not None and (
        isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 <= tol < math.inf
    ):
        raise ValueError(f"tol must be None or a finite number >= 0, got {tol!r}")


def _check_positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")


# --- Parameters as one flat vector -----------------------------------------------------------


def _trainable(model: nn.Module) -> list[nn.Parameter]:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no parameters that require grad")
    first = params[0]
    for p in params[1:]:
        if p.dtype != first.dtype or p.device != first.device:
            raise ValueError(
                "model parameters must share one dtype and device to form a flat vector, got "
                f"{first.dtype} on {first.device} and {p.dtype} on {p.device}"
            )
    return params


def _flatten(tensors: list[Tensor] | tuple[Tensor, ...]) -> Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def _unflatten(flat: Tensor, params: Sequence[Tensor]) -> list[Tensor]:
    chunks = flat.split([p.numel() for p in params])
    return [c.view_as(p) for c, p in zip(chunks, params)]


def _loss(model: nn.Module, loss_fn: LossFn) -> Tensor:
    loss = loss_fn(model)
    if not isinstance(loss, Tensor) or loss.numel() != 1:
        raise ValueError(
            f"loss_fn must return a scalar tensor, got {type(loss).__name__} "
            f"of shape {tuple(getattr(loss, 'shape', ()))}"
        )
    if not loss.requires_grad:
        raise ValueError(
            "loss_fn(model) does not depend on the parameters that require grad "
            "(was it computed under torch.no_grad()?)"
        )
    return loss.reshape(())


def _grad(outputs: Tensor, params: list[nn.Parameter], **kwargs) -> tuple[Tensor, ...]:
    """Gradient of a scalar, zeros where it does not depend on a parameter (or on nothing)."""
    if not outputs.requires_grad:  # e.g. v . grad of a linear loss: the Hessian is zero
        return tuple(torch.zeros_like(p) for p in params)
    return torch.autograd.grad(outputs, params, materialize_grads=True, **kwargs)


def _hvp_operator(model: nn.Module, loss_fn: LossFn) -> tuple[_Operator, int]:
    """``(apply, n)``: ``apply(v)`` is :math:`Hv` at the current parameters (see `loss_hvp`)."""
    params = _trainable(model)
    with torch.enable_grad():
        _, apply = loss_hvp(_loss(model, loss_fn), params)
    return apply, sum(p.numel() for p in params)


def loss_hvp(loss: Tensor, params: Sequence[Tensor]) -> tuple[Tensor, _Operator]:
    r"""The flat gradient :math:`g = \nabla L` of a computed loss, and :math:`v \mapsto Hv`.

    For code that holds a loss rather than a model (an optimizer's closure): ``loss`` must
    still have its graph (no ``backward()`` called on it) and depend on ``params``. Vectors are
    flat over ``params`` in their order.

    Double backward, with the graph of the gradient built once and kept: every product is then
    one backward pass through that graph. The alternatives, ``torch.func.jvp`` over
    ``torch.func.grad`` (forward-over-reverse) or a double backward through a fresh graph, give
    the same numbers but rerun the forward and backward pass on every call, and are slower
    (``benchmarks/curvature.py --products``; figures in ``benchmarks/RESULTS.md``).
    Keeping the graph also means dropout masks or batch-norm statistics are the same for every
    product, so the operator is one symmetric matrix, which Lanczos, power iteration and the
    conjugate gradient method assume.
    """
    params = list(params)
    with torch.enable_grad():
        grads = _grad(loss.reshape(()), params, create_graph=True)

    def apply(v: Tensor) -> Tensor:
        v = v.to(device=params[0].device, dtype=params[0].dtype)
        with torch.enable_grad():
            dot = sum((g * u).sum() for g, u in zip(grads, _unflatten(v, params)))
            return _flatten(_grad(dot, params, retain_graph=True))

    return _flatten([g.detach() for g in grads]), apply


def _check_vector(v: Tensor, n: int, name: str) -> None:
    if not isinstance(v, Tensor) or v.shape != (n,):
        shape = tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
        raise ValueError(f"{name} must be a flat tensor of shape ({n},), got {shape}")


# --- Products and the dense Hessian ----------------------------------------------------------


def hvp(model: nn.Module, loss_fn: LossFn, v: Tensor) -> Tensor:
    r"""The Hessian-vector product :math:`H v = \nabla (\nabla L^\top v)` at the current parameters.

    Args:
        model: the network; its trainable parameters form :math:`\theta \in \mathbb{R}^n`.
        loss_fn: ``loss_fn(model)`` returns the scalar loss :math:`L(\theta)`.
        v: a flat vector of shape ``(n,)``, moved to the model's device and dtype.

    Returns:
        :math:`Hv`, shape ``(n,)``, on the model's device and in its dtype.
    """
    _check_vector(v, sum(p.numel() for p in _trainable(model)), "v")
    apply, _ = _hvp_operator(model, loss_fn)
    return apply(v)


class _LossCall(nn.Module):
    """A module whose forward is ``loss_fn(model)``, for ``torch.func.functional_call``."""

    def __init__(self, model: nn.Module, loss_fn: LossFn) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self) -> Tensor:
        return self.loss_fn(self.model)


def hessian(model: nn.Module, loss_fn: LossFn, *, max_params: int = 5000) -> Tensor:
    r"""The dense Hessian :math:`H_{ij} = \partial^2 L / (\partial\theta_i \partial\theta_j)`.

    Built by ``torch.func`` as the Jacobian of the gradient of the loss as a function of the
    flat parameter vector: a route through autodiff separate from `hvp`'s double backward, so
    each checks the other. ``loss_fn`` must then be a pure function of the parameters: no
    ``.item()``, no in-place updates of buffers (put batch-norm models in ``eval()`` mode).

    Args:
        max_params: refuse models with more parameters than this (default 5000), since the
            result takes :math:`n^2` numbers and about :math:`n` products to build.

    Returns:
        :math:`H`, shape ``(n, n)``, on the model's device and in its dtype.
    """
    _check_int("max_params", max_params, 1)
    params = _trainable(model)
    _loss(model, loss_fn)  # a scalar that depends on the parameters, or a clear ValueError
    n = sum(p.numel() for p in params)
    if n > max_params:
        raise ValueError(
            f"the model has {n} parameters, more than max_params={max_params}; "
            "raise max_params or use hvp / top_eigenvalues / spectral_density"
        )
    names = [name for name, p in model.named_parameters() if p.requires_grad]

    def flat_loss(theta: Tensor) -> Tensor:
        state = {f"model.{name}": t for name, t in zip(names, _unflatten(theta, params))}
        # functional_call swaps the parameters in for the duration of one call of the model;
        # the wrapper makes that call loss_fn(model) rather than model(...).
        return torch.func.functional_call(_LossCall(model, loss_fn), state, ()).reshape(())

    theta = _flatten([p.detach() for p in params])
    # Reverse over reverse: torch.func.hessian (forward over reverse) gives the same matrix, but
    # in torch 2.13 its forward-mode decompositions emit a torch.jit deprecation warning. The
    # outer Jacobian runs n backward passes batched by vmap; chunks of 256 cap the memory at
    # 256 copies of the activations.
    with torch.enable_grad():
        return torch.func.jacrev(torch.func.jacrev(flat_loss), chunk_size=256)(theta)


# --- Largest eigenvalues ---------------------------------------------------------------------


def _randn(n: int, generator: torch.Generator | None) -> Tensor:
    # Drawn on the CPU in float64, then moved: the same seed gives the same start everywhere.
    return torch.randn(n, generator=generator, dtype=torch.float64)


def _rademacher(n: int, generator: torch.Generator | None) -> Tensor:
    return torch.randint(0, 2, (n,), generator=generator, dtype=torch.float64) * 2.0 - 1.0


def _eigsh(
    apply: _Operator,
    n: int,
    k: int,
    which: str,
    *,
    tol: float = 0.0,
    max_iter: int | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """scipy's ARPACK (implicitly restarted Lanczos) over products, in float64 numpy.

    Returns eigenvalues ``(k,)`` and eigenvectors ``(n, k)`` as float64 CPU tensors, in
    ARPACK's order (ascending).
    """

    def matvec(x: np.ndarray) -> np.ndarray:
        hx = apply(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64).reshape(-1)))
        return hx.detach().to(device="cpu", dtype=torch.float64).numpy()

    operator = LinearOperator((n, n), matvec=matvec, dtype=np.float64)
    values, vectors = eigsh(
        operator, k=k, which=which, tol=tol, maxiter=max_iter, v0=_randn(n, generator).numpy()
    )
    return torch.from_numpy(values), torch.from_numpy(vectors)


def _power_iteration(
    apply: _Operator,
    v0: Tensor,
    k: int,
    *,
    tol: float,
    max_iter: int,
    generator: torch.Generator | None,
) -> tuple[Tensor, Tensor]:
    r"""The k largest eigenpairs of the symmetric operator ``apply`` by shifted power iteration.

    Power iteration :math:`v \leftarrow Hv / \|Hv\|` converges to the eigenvalue of largest
    *magnitude*; at a saddle that can be a negative one (at the 1-1-1 net's saddle, +2 and -2
    tie in magnitude and the iterate never settles). So we iterate with
    :math:`A = H + \rho I`, where :math:`\rho \ge |\lambda|` for every eigenvalue: :math:`A`
    has the same eigenvectors and eigenvalues :math:`\lambda + \rho \ge 0`, so its largest
    magnitude is the largest algebraic :math:`\lambda`. The price is speed: the error shrinks like
    :math:`((\lambda_{i+1} + \rho) / (\lambda_i + \rho))^t` rather than
    :math:`(|\lambda_{i+1}| / |\lambda_i|)^t`.

    .. math::
        &\textbf{phase 1: } v \leftarrow Hv / \|Hv\| \text{ until } \rho = \|Hv\|
            \text{ settles} \quad (\|Hv\| \to \max_i |\lambda_i| \text{ even with ties}) \\
        &\textbf{for } i = 1, \dots, k: \quad Q = [q_1, \dots, q_{i-1}], \quad P = I - QQ^\top \\
        &\qquad \textbf{repeat: } \lambda = v^\top H v, \quad
            \textbf{stop if } \|P(Hv - \lambda v)\| \le \mathrm{tol}\cdot\rho, \quad
            v \leftarrow P(Hv + \rho v) / \|P(Hv + \rho v)\| \\
        &\qquad \lambda_i = \lambda, \quad q_i = v

    Deflation by the projection :math:`P` keeps the iterate orthogonal to the eigenvectors
    already found, so it converges to the next one.
    """
    # Phase 1: the spectral radius rho. ||Hv|| grows monotonically towards it.
    v = v0 / v0.norm()
    rho = 0.0
    for _ in range(max_iter):
        w = apply(v)
        norm = w.norm().item()
        if norm == 0.0:  # v in the null space (or H = 0): no information, keep rho
            break
        v = w / norm
        settled = abs(norm - rho) <= tol * norm
        rho = norm
        if settled:
            break

    found = v.new_zeros(v.numel(), 0)  # (n, i): the eigenvectors so far, as columns
    values = []
    for i in range(k):
        if i > 0:  # a fresh start; the first pair starts where phase 1 ended
            v = _randn(v.numel(), generator).to(v)
        v = v - found @ (found.T @ v)
        v = v / v.norm()
        for _ in range(max_iter):
            hv = apply(v)
            value = torch.dot(v, hv)  # the Rayleigh quotient, an estimate of lambda_i
            residual = hv - value * v
            residual = residual - found @ (found.T @ residual)
            if residual.norm().item() <= tol * rho:
                break
            w = hv + rho * v  # (H + rho I) v
            w = w - found @ (found.T @ w)  # deflate: stay orthogonal to q_1 .. q_{i-1}
            v = w / w.norm()
        else:
            raise RuntimeError(
                f"power iteration did not converge for eigenvalue {i + 1} in max_iter={max_iter} "
                f"products (residual {residual.norm().item():.3g}, target {tol * rho:.3g}); "
                "raise max_iter or tol, or use method='lanczos'"
            )
        values.append(value)
        found = torch.cat([found, v[:, None]], dim=1)
    return torch.stack(values), found


def top_eigenvalues(
    model: nn.Module,
    loss_fn: LossFn,
    k: int = 1,
    *,
    method: str = "lanczos",
    tol: float = 1e-6,
    max_iter: int | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    r"""The k largest (algebraic) eigenvalues of the Hessian and their eigenvectors.

    .. math::
        H q_i = \lambda_i q_i, \qquad \lambda_1 \ge \lambda_2 \ge \dots \ge \lambda_k,
        \qquad q_i^\top q_j = \delta_{ij}

    The second-order model of a gradient step (seed 001),
    :math:`L(\theta - \alpha g) \approx L - \alpha \|g\|^2 + \tfrac12 \alpha^2 g^\top H g`,
    shows why the largest ones matter: along :math:`q_1` a step with :math:`\alpha > 2 /
    \lambda_1` raises the loss. Trained networks show a few such outliers above a bulk near zero.

    Args:
        model, loss_fn: as in `hvp`.
        k: number of eigenpairs, ``1 <= k < n`` for ``"lanczos"`` (an ARPACK limit), ``k <= n``
            for ``"power"``.
        method: ``"lanczos"``: scipy's ``eigsh(which="LA")`` over a ``LinearOperator`` of
            products, the method to use. ``"power"``: power iteration with deflation, written
            out in this file to be read; it needs many more products (see
            ``benchmarks/curvature.py``).
        tol: relative accuracy. Lanczos: ARPACK's, residual
            :math:`\|Hq - \lambda q\| \lesssim \mathrm{tol} \cdot |\lambda|`. Power: residual
            :math:`\le \mathrm{tol} \cdot \max_i |\lambda_i|`.
        max_iter: Lanczos: ARPACK restarts (None: scipy's default, ``10 n``). Power:
            products per eigenpair (None: 1000). Not converging raises ``RuntimeError``.
        generator: source of the random start vectors.

    Returns:
        eigenvalues ``(k,)``, descending, and eigenvectors ``(n, k)`` as columns (each up to
        sign), on the model's device and in its dtype.
    """
    if method not in ("lanczos", "power"):
        raise ValueError(f"method must be 'lanczos' or 'power', got {method!r}")
    _check_positive("tol", tol)
    if max_iter is not None:
        _check_int("max_iter", max_iter, 1)
    _check_int("k", k, 1)
    params = _trainable(model)
    like, n = params[0], sum(p.numel() for p in params)
    if method == "lanczos" and k >= n:
        raise ValueError(
            f"k must be < n = {n} for method='lanczos', got {k}; "
            "use method='power' or hessian() for the full spectrum"
        )
    if k > n:
        raise ValueError(f"k must be <= n = {n}, got {k}")
    apply, n = _hvp_operator(model, loss_fn)
    if method == "lanczos":
        values, vectors = _eigsh(apply, n, k, "LA", tol=tol, max_iter=max_iter, generator=generator)
    else:
        v0 = _randn(n, generator).to(like)
        values, vectors = _power_iteration(
            apply, v0, k, tol=tol, max_iter=max_iter or 1000, generator=generator
        )
    order = torch.argsort(values, descending=True)
    return values[order].to(like), vectors[:, order].to(like)


def smallest_eigenvalues(
    model: nn.Module,
    loss_fn: LossFn,
    k: int = 1,
    *,
    tol: float = 1e-6,
    max_iter: int | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    r"""The k smallest (most negative) eigenvalues of the Hessian and their eigenvectors.

    .. math::
        \lambda_{n-i+1}(H) = -\lambda_i(-H), \qquad i = 1, \dots, k

    `top_eigenvalues` (Lanczos) of the negated loss, negated back: a negative value is a
    direction of negative curvature, so a point where the gradient is (nearly) zero and the
    smallest eigenvalue is negative is not a minimum. The smallest eigenvalues of a network's
    Hessian usually sit at the edge of the dense bulk near zero, where Lanczos converges more
    slowly than for the outliers at the top (Ghorbani, Krishnan & Xiao 2019).

    Args:
        k, tol, max_iter, generator: as for `top_eigenvalues` (method "lanczos").

    Returns:
        ``(values, vectors)``: values ``(k,)`` ascending, vectors ``(n, k)`` as columns.
    """

    def negated(m: nn.Module) -> Tensor:
        return -loss_fn(m)

    values, vectors = top_eigenvalues(
        model, negated, k, tol=tol, max_iter=max_iter, generator=generator
    )
    return -values, vectors


# --- Trace and spectral density --------------------------------------------------------------


def hutchinson_trace(
    model: nn.Module,
    loss_fn: LossFn,
    samples: int = 100,
    *,
    generator: torch.Generator | None = None,
) -> tuple[float, float]:
    r"""Hutchinson's estimate of :math:`\mathrm{tr}\, H` (Rademacher probes) and its standard error.

    .. math::
        \mathrm{tr}\, H = \mathbb{E}\big[z^\top H z\big], \quad z_i = \pm 1
        \text{ independently}, \qquad
        \hat t = \frac1S \sum_{s=1}^S z_s^\top H z_s, \qquad
        \mathrm{se} = \frac{\mathrm{std}(z_s^\top H z_s)}{\sqrt S}

    For Rademacher probes :math:`\mathrm{Var}(z^\top H z) = 2 \sum_{i \ne j} H_{ij}^2`, smaller
    than the :math:`2 \sum_{ij} H_{ij}^2` of Gaussian probes, and zero for a diagonal Hessian.
    The trace is :math:`n` times the mean eigenvalue; a flat minimum has a small one.

    Args:
        samples: number of probes :math:`S \ge 2` (two are needed for a standard error).
        generator: source of the probes.

    Returns:
        ``(estimate, stderr)`` as Python floats.
    """
    _check_int("samples", samples, 2)
    apply, n = _hvp_operator(model, loss_fn)
    quadratic_forms = []
    for _ in range(samples):
        z = _rademacher(n, generator)
        hz = apply(z)
        quadratic_forms.append(torch.dot(z.to(hz), hz).detach())
    values = torch.stack(quadratic_forms).to(device="cpu", dtype=torch.float64)
    return values.mean().item(), (values.std() / math.sqrt(samples)).item()


def _lanczos(apply: _Operator, v0: Tensor, steps: int) -> tuple[Tensor, Tensor]:
    r"""The tridiagonal :math:`T_m = V_m^\top H V_m` of m Lanczos steps from ``v0``.

    .. math::
        &v_1 = v_0 / \|v_0\|; \quad \textbf{for } j = 1, \dots, m: \quad
            w = H v_j, \quad \alpha_j = v_j^\top w, \\
        &\qquad w \leftarrow w - V_j (V_j^\top w) \text{ (twice)}, \quad
            \beta_j = \|w\|, \quad v_{j+1} = w / \beta_j

    In exact arithmetic subtracting :math:`\alpha_j v_j + \beta_{j-1} v_{j-1}` suffices (the
    three-term recurrence); in floating point the basis soon loses orthogonality and copies of
    the large eigenvalues appear ("ghosts"), so we subtract the components along every earlier
    vector, twice. Stops early when :math:`\beta_j` vanishes: the Krylov space is invariant and
    :math:`T_j` holds the exact spectral measure of the probe.

    Returns:
        ``alpha (m,)`` and ``beta (m - 1,)``, float64 on the CPU.
    """
    basis = v0.new_zeros(steps, v0.numel())  # (m, n): the Lanczos vectors as rows
    v = v0 / v0.norm()
    alphas, betas = [], []
    for j in range(steps):
        basis[j] = v
        w = apply(v)
        hv_norm = w.norm()
        alphas.append(torch.dot(v, w))
        previous = basis[: j + 1]
        for _ in range(2):  # "twice is enough" (Kahan, Parlett)
            w = w - previous.T @ (previous @ w)
        beta = w.norm()
        if j + 1 == steps or beta <= math.sqrt(torch.finfo(w.dtype).eps) * hv_norm:
            break
        betas.append(beta)
        v = w / beta
    alpha = torch.stack(alphas).to(device="cpu", dtype=torch.float64)
    beta = torch.stack(betas).to(device="cpu", dtype=torch.float64) if betas else alpha[:0]
    return alpha, beta


def spectral_density(
    model: nn.Module,
    loss_fn: LossFn,
    *,
    probes: int = 10,
    steps: int = 50,
    grid: int | Tensor | None = None,
    sigma: float | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    r"""The eigenvalue density of the Hessian by stochastic Lanczos quadrature (SLQ).

    The density :math:`\phi(t) = \frac1n \sum_i \delta(t - \lambda_i)`, smoothed by a Gaussian
    :math:`g_\sigma`, is estimated as in Ghorbani, Krishnan & Xiao (2019) after Ubaru, Chen &
    Saad (2017). For a unit probe :math:`v = z / \sqrt n` with Rademacher :math:`z`, the measure
    :math:`\mu_v = \sum_i (q_i^\top v)^2 \delta_{\lambda_i}` has expectation :math:`\phi`.
    m Lanczos steps from :math:`v` give :math:`T_m = U \mathrm{diag}(\theta) U^\top`, and the Gauss
    quadrature rule with nodes :math:`\theta_j` and weights :math:`\tau_j = U_{1j}^2` integrates
    polynomials of degree up to :math:`2m - 1` exactly against :math:`\mu_v`. So, over P probes,

    .. math::
        \hat\phi_\sigma(t) = \frac1P \sum_{p=1}^P \sum_{j=1}^m \tau_{pj}\,
            \frac{1}{\sigma\sqrt{2\pi}} \exp\Big(-\frac{(t - \theta_{pj})^2}{2\sigma^2}\Big)

    The Lanczos iteration is written out here (`_lanczos`) because scipy offers ARPACK's
    eigenvalues but not the tridiagonal matrix and its first eigenvector components that SLQ
    needs.

    Args:
        probes: number of random probes :math:`P \ge 1`.
        steps: Lanczos steps per probe, :math:`m \ge 1` (at most n are taken).
        grid: points at which to evaluate the density: a 1-D tensor, or a number of points
            (``>= 2``, default 1000) spread evenly over the nodes' range widened by
            :math:`5\sigma` on each side. With the default sigma that is about nine points per
            sigma, and the density integrates to one up to :math:`10^{-6}`. A grid that misses
            part of the spectrum integrates to less.
        sigma: width of the Gaussians (default: a hundredth of the nodes' range).
        generator: source of the probes.

    Returns:
        ``(grid, density)``, each of shape ``(G,)``, on the model's device and in its dtype.
    """
    _check_int("probes", probes, 1)
    _check_int("steps", steps, 1)
    if sigma is not None:
        _check_positive("sigma", sigma)
    if isinstance(grid, Tensor):
        if grid.dim() != 1 or grid.numel() < 1:
            raise ValueError(f"grid must be a 1-D tensor of points, got shape {tuple(grid.shape)}")
    elif grid is not None:
        _check_int("grid", grid, 2)
    apply, n = _hvp_operator(model, loss_fn)
    like = _trainable(model)[0]

    nodes, weights = [], []
    for _ in range(probes):
        alpha, beta = _lanczos(apply, _rademacher(n, generator).to(like), min(steps, n))
        theta, eigenvectors = torch.linalg.eigh(
            torch.diag(alpha) + torch.diag(beta, 1) + torch.diag(beta, -1)
        )
        nodes.append(theta)
        weights.append(eigenvectors[0] ** 2)  # tau_j: they sum to one for each probe
    nodes, weights = torch.cat(nodes), torch.cat(weights) / probes  # (P m,)

    width = (nodes.max() - nodes.min()).item()
    if sigma is None:
        sigma = 0.01 * (width if width > 0 else max(nodes.abs().max().item(), 1.0))
    if isinstance(grid, Tensor):
        points = grid.detach().to(device="cpu", dtype=torch.float64)
    else:
        pad = 5.0 * sigma
        points = torch.linspace(
            nodes.min().item() - pad,
            nodes.max().item() + pad,
            1000 if grid is None else grid,
            dtype=torch.float64,
        )
    gaussians = torch.exp(-0.5 * ((points[:, None] - nodes[None, :]) / sigma) ** 2)  # (G, P m)
    density = gaussians @ weights / (sigma * math.sqrt(2.0 * math.pi))
    return points.to(like), density.to(like)


# --- Critical points and their index ---------------------------------------------------------


def _count_negative(eigenvalues: Tensor, tol: float | None) -> int:
    if tol is None:
        tol = math.sqrt(torch.finfo(eigenvalues.dtype).eps) * eigenvalues.abs().max().item()
    return int((eigenvalues < -tol).sum().item())


def index(
    model: nn.Module, loss_fn: LossFn, *, tol: float | None = None, max_params: int = 5000
) -> int:
    r"""The index of the current point: the number of negative eigenvalues of the Hessian.

    .. math::
        \mathrm{index}(\theta) = \#\{\, i : \lambda_i(H(\theta)) < -\mathrm{tol} \,\}

    At a critical point, index 0 is a minimum (when no eigenvalue is zero), index :math:`n` a
    maximum, anything between a saddle with that many directions of descent. Elsewhere it
    counts the directions of negative curvature.

    Small models (``n <= max_params``) use the dense `hessian` and ``eigvalsh``. Larger ones
    use ARPACK's ``eigsh(which="SA")`` for the 8 smallest eigenvalues and double that number
    while all of them are negative: the cost grows with the index, and the smallest eigenvalues
    of a network's Hessian sit at the edge of a dense bulk near zero, where Lanczos converges
    slowly, so expect minutes for large models.

    Args:
        tol: eigenvalues below ``-tol`` count as negative. None: the square root of the
            dtype's machine epsilon times the largest :math:`|\lambda_i|`, so that rounding of
            zero eigenvalues (flat directions, as along the 1-1-1 net's hyperbola of minima)
            does not count.
        max_params: the largest model handled densely.
    """
    _check_tol_or_none(tol)
    _check_int("max_params", max_params, 1)
    n = sum(p.numel() for p in _trainable(model))
    if n <= max_params:
        return _count_negative(
            torch.linalg.eigvalsh(hessian(model, loss_fn, max_params=max_params)), tol
        )
    apply, n = _hvp_operator(model, loss_fn)
    largest, _ = _eigsh(apply, n, 1, "LA")
    k = min(8, n - 1)
    while True:
        smallest, _ = _eigsh(apply, n, k, "SA")
        known = torch.cat([smallest, largest])  # the remaining eigenvalues lie between them
        if tol is None:
            threshold = math.sqrt(torch.finfo(known.dtype).eps) * known.abs().max().item()
        else:
            threshold = tol
        count = int((smallest < -threshold).sum().item())
        if count < k:
            return count
        if k == n - 1:  # all but the largest are negative
            return count + int(largest.item() < -threshold)
        k = min(2 * k, n - 1)


@dataclass(frozen=True)
class CriticalPoint:
    r"""The point where `find_critical_point` stopped; the model holds its parameters.

    Attributes:
        loss: :math:`L` there.
        grad_norm: :math:`\|\nabla L\|` there; small only if the search converged.
        index: number of negative Hessian eigenvalues (see `index`).
        eigenvalues: the whole spectrum, ascending, when the model is small enough for the
            dense Hessian (``n <= max_params``); None otherwise.
        steps: optimizer steps taken.
        converged: whether ``grad_norm <= grad_tol`` was reached.
    """

    loss: float
    grad_norm: float
    index: int
    eigenvalues: Tensor | None
    steps: int
    converged: bool


def find_critical_point(
    model: nn.Module,
    loss_fn: LossFn,
    *,
    steps: int = 1000,
    lr: float = 1e-2,
    optimizer: Callable[..., torch.optim.Optimizer] = torch.optim.SGD,
    grad_tol: float = 1e-8,
    tol: float | None = None,
    max_params: int = 5000,
) -> CriticalPoint:
    r"""Search for a critical point, of any index, by minimising the squared gradient norm.

    .. math::
        \psi(\theta) = \tfrac12 \|\nabla L(\theta)\|^2, \qquad
        \nabla \psi(\theta) = H(\theta)\, \nabla L(\theta)

    Every critical point of :math:`L` is a global minimum of :math:`\psi`. Gradient descent on
    :math:`L` is pushed away from saddles; descent on :math:`\psi` is drawn to the nearest
    critical point, saddles included. Pennington & Bahri (2017) find critical points of networks
    this way to relate their index to their loss; Dauphin et al. (2014) plot the same relation
    for critical points of small networks. Each step costs one
    gradient and one Hessian-vector product. Beware: :math:`\psi` also has local minima where
    :math:`Hg = 0` with :math:`g \ne 0` (the Hessian singular along the gradient), which are
    not critical points of :math:`L`; ``converged`` and ``grad_norm`` tell them apart.

    The model's parameters are changed in place and stay at the point found; their ``.grad``
    are used by the optimizer and left at None.

    Args:
        steps: at most this many optimizer steps (``>= 1``).
        lr: learning rate passed to the optimizer.
        optimizer: called as ``optimizer(params, lr=lr)``; any ``torch.optim`` or
            ``coursekit.optim`` class (default plain gradient descent, ``torch.optim.SGD``).
        grad_tol: stop once :math:`\|\nabla L\| \le` ``grad_tol``.
        tol, max_params: passed to `index` to classify the point found.
    """
    _check_int("steps", steps, 1)
    _check_positive("lr", lr)
    _check_positive("grad_tol", grad_tol)
    _check_tol_or_none(tol)
    _check_int("max_params", max_params, 1)
    if not callable(optimizer):
        raise ValueError(
            f"optimizer must be callable as optimizer(params, lr=lr), got {optimizer!r}"
        )
    params = _trainable(model)
    opt = optimizer(params, lr=lr)
    taken = 0
    while True:
        with torch.enable_grad():
            loss = _loss(model, loss_fn)
            grads = _grad(loss, params, create_graph=True)
            squared_norm = sum((g * g).sum() for g in grads)
            grad_norm = math.sqrt(squared_norm.item())
            if grad_norm <= grad_tol or taken == steps:
                break
            grad_psi = _grad(0.5 * squared_norm, params)  # H g, by one more backward pass
        for p, g in zip(params, grad_psi):
            p.grad = g
        opt.step()
        taken += 1
    for p in params:
        p.grad = None

    n = sum(p.numel() for p in params)
    eigenvalues = None
    if n <= max_params:
        eigenvalues = torch.linalg.eigvalsh(hessian(model, loss_fn, max_params=max_params))
        point_index = _count_negative(eigenvalues, tol)
    else:
        point_index = index(model, loss_fn, tol=tol, max_params=max_params)
    return CriticalPoint(
        loss=loss.item(),
        grad_norm=grad_norm,
        index=point_index,
        eigenvalues=eigenvalues,
        steps=taken,
        converged=grad_norm <= grad_tol,
    )


def newton_critical_point(
    model: nn.Module,
    loss_fn: LossFn,
    *,
    steps: int = 100,
    grad_tol: float = 1e-10,
    tol: float | None = None,
    max_params: int = 5000,
) -> CriticalPoint:
    r"""Search for a critical point near the start, of any index, by damped Newton steps.

    Newton's method for the equation :math:`\nabla L(\theta) = 0`, damped as Levenberg and
    Marquardt do so that every step lowers :math:`\psi = \tfrac12 \|\nabla L\|^2`:

    .. math::
        \theta \leftarrow \theta - (H^2 + \mu \rho^2 I)^{-1} H\, g, \qquad
        g = \nabla L(\theta), \quad \rho = \max_i |\lambda_i(H)|

    computed from the eigendecomposition :math:`H = Q \Lambda Q^\top` as
    :math:`-Q\, \mathrm{diag}(\lambda_i / (\lambda_i^2 + \mu\rho^2))\, Q^\top g`. A step
    that lowers :math:`\psi` is taken and :math:`\mu` divided by 4; otherwise :math:`\mu` is
    multiplied by 4 and the step retried. As :math:`\mu \to 0` this is Newton's step
    :math:`-H^{+} g` (zero along flat directions, as on a valley of critical points), which
    converges quadratically; large :math:`\mu` gives short steps along
    :math:`-H g = -\nabla\psi`. Unlike gradient descent on :math:`L`, Newton's method is
    attracted to saddles as much as to minima (Dauphin et al. 2014): it finds the critical
    point of any index near its start. Like `find_critical_point` it can also stop at a local
    minimum of :math:`\psi` that is not a critical point (:math:`Hg = 0`, :math:`g \ne 0`);
    ``converged`` tells. Each step forms the dense Hessian: small models only.

    The model's parameters are changed in place and stay at the point found.

    Args:
        steps: at most this many Hessians (accepted steps), ``>= 1``.
        grad_tol: stop once :math:`\|\nabla L\| \le` ``grad_tol``.
        tol: passed to `index` to classify the point found.
        max_params: the largest model accepted (the Hessian has ``n * n`` entries).
    """
    _check_int("steps", steps, 1)
    _check_positive("grad_tol", grad_tol)
    _check_tol_or_none(tol)
    _check_int("max_params", max_params, 1)
    params = _trainable(model)
    n = sum(p.numel() for p in params)
    if n > max_params:
        raise ValueError(
            f"the model has {n} parameters, more than max_params={max_params}; "
            "use find_critical_point, which needs only Hessian-vector products"
        )

    def loss_and_grad() -> tuple[float, Tensor]:
        with torch.enable_grad():
            loss = _loss(model, loss_fn)
            return loss.item(), _flatten(_grad(loss, params)).detach()

    def assign(theta: Tensor) -> None:
        with torch.no_grad():
            for p, value in zip(params, _unflatten(theta, params)):
                p.copy_(value)

    loss, g = loss_and_grad()
    psi = 0.5 * torch.dot(g, g).item()
    mu, taken = 1e-3, 0
    while math.sqrt(2.0 * psi) > grad_tol and taken < steps:
        values, vectors = torch.linalg.eigh(hessian(model, loss_fn, max_params=max_params))
        rho2 = values.abs().max().item() ** 2 or 1.0
        g_eig = vectors.T @ g  # the gradient in the Hessian's eigenbasis
        theta = _flatten([p.detach() for p in params]).clone()
        while mu <= 1e12:  # past this, the step is far below rounding: a minimum of psi
            assign(theta - vectors @ (values / (values.square() + mu * rho2) * g_eig))
            trial_loss, trial_g = loss_and_grad()
            trial_psi = 0.5 * torch.dot(trial_g, trial_g).item()
            if trial_psi < psi:
                loss, g, psi = trial_loss, trial_g, trial_psi
                mu = max(mu / 4.0, 1e-15)
                break
            mu *= 4.0
        else:
            assign(theta)
            break
        taken += 1

    grad_norm = math.sqrt(2.0 * psi)
    eigenvalues = torch.linalg.eigvalsh(hessian(model, loss_fn, max_params=max_params))
    return CriticalPoint(
        loss=loss,
        grad_norm=grad_norm,
        index=_count_negative(eigenvalues, tol),
        eigenvalues=eigenvalues,
        steps=taken,
        converged=grad_norm <= grad_tol,
    )
