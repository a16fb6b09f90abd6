r"""The Fisher information matrix of a classifier and the natural gradient (Amari 1998).

Lecture 6 (seeds 001, 003). A classifier with logits :math:`z = f_\theta(x)` defines a
distribution :math:`p_\theta(y \mid x)` (softmax over several logits; a sigmoid for one). Its
Fisher matrix, averaged over the inputs,

.. math::
    F = \frac1N \sum_n \mathbb{E}_{y \sim p_\theta(\cdot \mid x_n)}
        \big[\nabla_\theta \log p_\theta(y \mid x_n)\, \nabla_\theta \log p_\theta(y \mid x_n)^\top\big]
      = \frac1N \sum_n J_n^\top \big(\mathrm{diag}(p_n) - p_n p_n^\top\big) J_n ,

with :math:`J_n = \partial z_n / \partial \theta` and :math:`p_n = \mathrm{softmax}(z_n)`, is the
metric of the model's distributions: the natural gradient step
:math:`\theta \leftarrow \theta - \eta\,(F + \lambda I)^{-1} \nabla L` is the steepest descent
step measured in KL divergence instead of Euclidean distance, and (with :math:`\lambda = 0`)
does not change when the parameters are replaced by an invertible linear map of them.
For cross-entropy :math:`F` also equals the Gauss-Newton matrix. The *empirical* Fisher puts
the observed labels in place of the expectation, :math:`\frac1N \sum_n \nabla \ell_n
\nabla \ell_n^\top`: a different matrix (Kunstner et al. 2019), shown as the contrast.

Everything is dense, :math:`P \times P` for :math:`P` parameters: the course's logistic
regressions and small MLPs have a few thousand at most. curvlinops-for-pytorch offers these
matrices as linear operators for large models, but it is not a dependency: its requirements
(BackPACK, linear_operator, torchvision) pull in a second torch build, and the dense matrix is
a few lines of ``torch.func`` (per-sample Jacobians by ``vmap`` over ``jacrev``).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, jacrev, vmap
from torch.optim import Optimizer

__all__ = ["NaturalGradient", "fisher_matrix", "negative_log_likelihood"]

FisherKind = Literal["exact", "empirical"]
_CHUNK = 256  # samples per vmap call: bounds the per-sample Jacobians' memory


def _trainable(model: nn.Module) -> dict[str, Tensor]:
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise ValueError("model has no parameters that require grad")
    return params


def _check_no_batch_coupling(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.training:
            raise ValueError(
                "the Fisher matrix treats samples independently, but a batch-norm layer in "
                "training mode couples them: call model.eval() first"
            )


def negative_log_likelihood(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy; binary (with logits) when the model has one output."""
    if logits.dim() == 1 or logits.shape[-1] == 1:
        return F.binary_cross_entropy_with_logits(
            logits.reshape(-1), targets.reshape(-1).to(logits.dtype)
        )
    return F.cross_entropy(logits, targets)


def fisher_matrix(
    model: nn.Module,
    inputs: Tensor,
    *,
    kind: FisherKind = "exact",
    targets: Tensor | None = None,
) -> Tensor:
    r"""The Fisher matrix :math:`F` (``kind="exact"``) or the empirical Fisher of a classifier.

    Args:
        model: maps ``(N, ...)`` inputs to logits ``(N, C)`` (or ``(N,)``/``(N, 1)``: binary).
            Batch-norm layers must be in eval mode.
        inputs: the :math:`x_n`, moved to the model's device.
        kind: "exact" (expectation over the model's own labels) or "empirical" (observed ones).
        targets: the observed labels; needed for "empirical".

    Returns:
        ``(P, P)`` on the model's device and dtype, the parameters that require grad flattened
        in the order of ``model.parameters()``.
    """
    if kind not in ("exact", "empirical"):
        raise ValueError(f"Invalid kind: {kind!r} (must be 'exact' or 'empirical')")
    if kind == "empirical" and targets is None:
        raise ValueError("Invalid targets: None (the empirical Fisher needs the labels)")
    _check_no_batch_coupling(model)
    params = {name: p.detach() for name, p in _trainable(model).items()}
    buffers = dict(model.named_buffers())
    first = next(iter(params.values()))
    inputs = inputs.to(device=first.device, dtype=first.dtype)
    n_params = sum(p.numel() for p in params.values())

    def logits_of(theta: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(model, (theta, buffers), (x.unsqueeze(0),)).reshape(-1)

    def loss_of(theta: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        return negative_log_likelihood(logits_of(theta, x).unsqueeze(0), y.unsqueeze(0))

    fisher = first.new_zeros(n_params, n_params)
    for start in range(0, len(inputs), _CHUNK):
        x = inputs[start : start + _CHUNK]
        if kind == "empirical":
            y = targets[start : start + _CHUNK].to(first.device)
            per_sample = vmap(grad(loss_of), in_dims=(None, 0, 0))(params, x, y)
            g = torch.cat([t.reshape(len(x), -1) for t in per_sample.values()], dim=1)
            fisher += g.T @ g
            continue
        z = vmap(logits_of, in_dims=(None, 0))(params, x)  # (n, C)
        jac = vmap(jacrev(logits_of), in_dims=(None, 0))(params, x)
        j = torch.cat([t.reshape(len(x), z.shape[1], -1) for t in jac.values()], dim=2)
        if z.shape[1] == 1:  # Bernoulli: the output covariance is s (1 - s)
            s = torch.sigmoid(z[:, 0])
            j1 = j[:, 0, :]
            fisher += (j1 * (s * (1 - s))[:, None]).T @ j1
        else:  # categorical: diag(p) - p p^T
            p = torch.softmax(z, dim=1)
            weighted = (j * p[:, :, None]).reshape(-1, n_params)
            jp = torch.einsum("ncq,nc->nq", j, p)
            fisher += weighted.T @ j.reshape(-1, n_params) - jp.T @ jp
    return fisher / len(inputs)


class NaturalGradient(Optimizer):
    r"""Natural gradient descent: :math:`\theta \leftarrow \theta - \eta\,(F + \lambda I)^{-1}
    \nabla L` with the dense Fisher matrix of `fisher_matrix` (Amari 1998).

    The loss is the mean negative log-likelihood of the model's own distribution (cross-entropy;
    binary cross-entropy with logits for one output), so the Fisher is the right metric for it.
    Unlike torch's optimizers, `step` takes the batch, because the Fisher needs the model's
    outputs on it, not only a loss.

    Args:
        model: the classifier (its trainable parameters are optimised, as one group).
        lr: :math:`\eta` (default 1).
        damping: :math:`\lambda \ge 0` added to the diagonal (default 1e-4; 0 for the exact
            invariance to reparameterisation).
        fisher: "exact" (default) or "empirical".
    """

    def __init__(
        self,
        model: nn.Module,
        lr: float = 1.0,
        damping: float = 1e-4,
        fisher: FisherKind = "exact",
    ) -> None:
        if not lr > 0:
            raise ValueError(f"Invalid lr: {lr} (must be > 0)")
        if not damping >= 0:
            raise ValueError(f"Invalid damping: {damping} (must be >= 0)")
        if fisher not in ("exact", "empirical"):
            raise ValueError(f"Invalid fisher: {fisher!r} (must be 'exact' or 'empirical')")
        super().__init__(list(_trainable(model).values()), dict(lr=lr, damping=damping))
        self.model = model
        self.fisher = fisher

    @torch.no_grad()
    def step(self, inputs: Tensor, targets: Tensor) -> Tensor:  # type: ignore[override]
        """One step on the batch ``(inputs, targets)``; returns the loss before it."""
        group = self.param_groups[0]
        params = group["params"]
        with torch.enable_grad():
            loss = negative_log_likelihood(self.model(inputs), targets)
            g = torch.cat([t.reshape(-1) for t in torch.autograd.grad(loss, params)])
        fisher = fisher_matrix(self.model, inputs, kind=self.fisher, targets=targets)
        fisher.diagonal().add_(group["damping"])
        direction = torch.linalg.solve(fisher, g)
        offset = 0
        for p in params:
            p.sub_(group["lr"] * direction[offset : offset + p.numel()].view_as(p))
            offset += p.numel()
        return loss.detach()
