r"""PRONG: layers whose inputs are whitened, re-estimated without changing the function.

Lecture 6 (seed 003). Desjardins, Simonyan, Pascanu and Kavukcuoglu (2015), "Natural Neural
Networks": a layer computes

.. math::
    y = W\, U (x - c) + b ,

where :math:`c` is the mean of the layer's inputs and :math:`U = (\Lambda + \epsilon I)^{-1/2}
Q^\top` whitens them (:math:`\Sigma = Q \Lambda Q^\top` their covariance). Whitened inputs make
the Fisher block of :math:`W` close to the identity, so plain gradient descent on :math:`W`
approximates natural gradient descent. As training moves the inputs, :math:`U, c` are
re-estimated every so often (`reestimate_whitening`), and :math:`W, b` are reparameterised so
that the network computes exactly the same function before and after:

.. math::
    W' = W U U'^{-1}, \qquad b' = b + W U (c' - c).

Batch normalisation (Ioffe and Szegedy 2015) is the diagonal cousin: it standardises each unit
separately (no rotation) and re-estimates on every batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from coursekit.models import ACTIVATIONS

__all__ = ["WhitenedLinear", "WhitenedMLP", "reestimate_whitening"]


class WhitenedLinear(nn.Module):
    r"""A linear layer on whitened inputs: :math:`y = W U (x - c) + b`.

    :math:`W` (``weight``, ``(out, in)``) and :math:`b` (``bias``) are parameters, drawn as
    ``nn.Linear`` draws them; :math:`U` (``whitening``, starts as the identity) and :math:`c`
    (``centre``, starts at zero) are buffers, changed only by `update_whitening`.

    Args:
        epsilon: added to the covariance's eigenvalues before the inverse square root, so that
            directions the inputs never take are not blown up (default 1e-2).
        generator: draws the initial weights (default: torch's global generator).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        epsilon: float = 1e-2,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if not epsilon > 0:
            raise ValueError(f"Invalid epsilon: {epsilon} (must be > 0)")
        self.epsilon = epsilon
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        with torch.no_grad():
            self.weight.uniform_(-bound, bound, generator=generator)
            if self.bias is not None:
                self.bias.uniform_(-bound, bound, generator=generator)
        self.register_buffer("whitening", torch.eye(in_features))
        self.register_buffer("centre", torch.zeros(in_features))

    def forward(self, x: Tensor) -> Tensor:
        return F.linear((x - self.centre) @ self.whitening.T, self.weight, self.bias)

    @torch.no_grad()
    def update_whitening(self, inputs: Tensor) -> None:
        r"""Re-estimate :math:`U, c` from a batch of this layer's inputs ``(N, in)`` and
        reparameterise :math:`W, b` so that the layer's output is unchanged for every input.

        Without a bias the centre cannot be absorbed, so it stays where it is and only
        :math:`U` is re-estimated.
        """
        x = inputs.reshape(-1, self.weight.shape[1]).to(self.weight)
        centre = x.mean(0) if self.bias is not None else self.centre
        xc = x - centre
        covariance = xc.T @ xc / len(x)
        values, vectors = torch.linalg.eigh(covariance)
        scale = (values.clamp_min(0) + self.epsilon).sqrt()
        whitening = vectors.T / scale[:, None]  # (Lambda + eps)^(-1/2) Q^T
        unwhitening = vectors * scale  # its inverse, Q (Lambda + eps)^(1/2)
        combined = self.weight @ self.whitening  # W U, the map the layer applies to x - c
        if self.bias is not None:
            self.bias += combined @ (centre - self.centre)
        self.weight.copy_(combined @ unwhitening)
        self.whitening.copy_(whitening)
        self.centre.copy_(centre)

    def extra_repr(self) -> str:
        out_features, in_features = self.weight.shape
        return f"in_features={in_features}, out_features={out_features}, epsilon={self.epsilon}"


class WhitenedMLP(nn.Module):
    """`coursekit.models.MLP` with every linear layer a `WhitenedLinear` (PRONG's network).

    Args:
        sizes: ``(d_in, hidden..., d_out)``.
        activation: one of `coursekit.models.ACTIVATIONS` (default "tanh", as in the paper).
        epsilon: each layer's `WhitenedLinear` epsilon.
        generator: draws the initial weights.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        activation: str = "tanh",
        *,
        epsilon: float = 1e-2,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"Invalid activation: {activation!r} (must be one of {sorted(ACTIVATIONS)})"
            )
        if len(sizes) < 2 or any(int(s) < 1 for s in sizes):
            raise ValueError(f"Invalid sizes: {list(sizes)} (need >= 2 positive sizes)")
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            if i > 0:
                layers.append(ACTIVATIONS[activation]())
            layers.append(WhitenedLinear(a, b, epsilon=epsilon, generator=generator))
        self.net = nn.Sequential(*layers)

    @property
    def linears(self) -> list[WhitenedLinear]:
        return [m for m in self.net if isinstance(m, WhitenedLinear)]

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


@torch.no_grad()
def reestimate_whitening(model: nn.Module, inputs: Tensor) -> int:
    """Re-estimate the whitening of every `WhitenedLinear` in `model` from one forward pass on
    `inputs`; returns how many layers were updated.

    One pass suffices: each update leaves the network's function unchanged, so the inputs the
    later layers saw before the earlier ones were updated are still the inputs they see after.
    """
    layers = [m for m in model.modules() if isinstance(m, WhitenedLinear)]
    seen: dict[WhitenedLinear, Tensor] = {}
    hooks = [
        layer.register_forward_pre_hook(lambda module, args: seen.__setitem__(module, args[0]))
        for layer in layers
    ]
    try:
        model(inputs)
    finally:
        for hook in hooks:
            hook.remove()
    for layer in layers:
        if layer in seen:
            layer.update_whitening(seen[layer])
    return len(seen)
