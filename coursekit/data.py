"""Data sets that ship with the packages: nothing is downloaded at run time.

`digits` is scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes), the course's
scaled-down MNIST.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Split", "digits"]


@dataclass(frozen=True)
class Split:
    """Train and test tensors: inputs `(n, d)` float, labels `(n,)` long."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor


def digits(test_fraction: float = 0.25, seed: int = 0, standardize: bool = True,
           dtype: torch.dtype = torch.float32) -> Split:
    """scikit-learn's digits as tensors, shuffled with `seed` and split into train and test.

    With `standardize`, every pixel is shifted and scaled to zero mean and unit variance over
    the training set (constant pixels are left at zero): lecture 1 shows why this helps.
    """
    from sklearn.datasets import load_digits

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"Invalid test_fraction: {test_fraction!r} (must be in (0, 1))")
    bunch = load_digits()
    x = torch.as_tensor(bunch.data, dtype=dtype)
    y = torch.as_tensor(bunch.target, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    x, y = x[order], y[order]
    n_test = int(round(test_fraction * len(x)))
    x_train, x_test = x[n_test:], x[:n_test]
    if standardize:
        mean, std = x_train.mean(0), x_train.std(0)
        std = torch.where(std > 0, std, torch.ones_like(std))
        x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    return Split(x_train, y[n_test:], x_test, y[:n_test])
