"""Data sets for the lectures: nothing is downloaded at run time.

- `digits`: scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes), the course's
  scaled-down MNIST; it ships with scikit-learn.
- `two_blobs`: LeCun's two-class, two-input Gaussian blobs for a single linear unit, centred
  and well scaled or not (seed 000).
- `regression`: a synthetic stand-in for the UCI regression problem of the deep-linear-net
  experiments with the l4 loss (seed 004).
- `load_mnist`, `load_cifar10`: readers for the original files a user already has on disk.
- `standardize`: zero mean and unit variance per input variable, with the training set's
  statistics.

Every function returns a `Split`; the synthetic sets' labels are float regression targets
(each docstring says which shape).
"""

from __future__ import annotations

import gzip
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "Split",
    "digits",
    "load_cifar10",
    "load_mnist",
    "read_idx",
    "regression",
    "standardize",
    "two_blobs",
]


@dataclass(frozen=True)
class Split:
    """Train and test tensors: inputs `(n, d)` float, labels `(n,)` long."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor


def digits(
    test_fraction: float = 0.25,
    seed: int = 0,
    standardize: bool = True,
    dtype: torch.dtype = torch.float32,
) -> Split:
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


# --- Synthetic sets for the lectures' experiments ------------------------------------------


def _pair(name: str, value: float | Sequence[float]) -> Tensor:
    """A float or a pair of floats as a tensor of two, one per input variable."""
    pair = torch.as_tensor(value, dtype=torch.float64).flatten()
    if pair.numel() == 1:
        pair = pair.repeat(2)
    if pair.numel() != 2:
        raise ValueError(f"Invalid {name}: {value!r} (must be a number or a pair of numbers)")
    return pair


def _check_test_fraction(test_fraction: float) -> None:
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"Invalid test_fraction: {test_fraction!r} (must be in (0, 1))")


def two_blobs(
    n: int = 200,
    *,
    seed: int = 0,
    separation: float = 3.0,
    mean_offset: float | Sequence[float] = 0.0,
    scale: float | Sequence[float] = 1.0,
    test_fraction: float = 0.25,
    dtype: torch.dtype = torch.float32,
) -> Split:
    r"""Two classes of two-dimensional points, one Gaussian blob each (seed 000's linear unit).

    Half the points (class -1, "blue") are drawn around :math:`-c`, half (class +1, "red")
    around :math:`+c`, with :math:`c = \frac{s}{2\sqrt2}(1, 1)` so that the centres are
    `separation` :math:`s` apart, and unit variance in every direction. Each input variable
    is then scaled and shifted,

    .. math::
        x \leftarrow x \odot \text{scale} + \text{mean\_offset},

    so ``mean_offset=(8, 8), scale=(1, 0.5)`` gives the non-centred, unequally scaled inputs
    of the lecture, and `standardize` undoes both. For a linear unit with the squared loss the
    Hessian is the inputs' second-moment matrix :math:`\frac2P\sum_p x_p x_p^\top`: an offset
    adds a large eigenvalue along the mean, unequal scales spread the others apart. (With the
    defaults that matrix has condition number about 3.7, and 180 with the example above; what
    standardisation leaves is the correlation the diagonal class means put in, which only
    decorrelating the inputs would remove.)

    Labels are the regression targets of that squared loss: `y_train` and `y_test` are float
    tensors of shape ``(n,)`` holding -1.0 and +1.0 (not the class indices of `Split`'s
    docstring; ``(y > 0).long()`` gives those). The split is stratified: each split holds the
    two classes in equal numbers (up to one point when `n` is odd), in a shuffled order.
    """
    if n < 4:
        raise ValueError(f"Invalid n: {n!r} (must be >= 4)")
    if separation < 0:
        raise ValueError(f"Invalid separation: {separation!r} (must be >= 0)")
    _check_test_fraction(test_fraction)
    offset, stretch = _pair("mean_offset", mean_offset), _pair("scale", scale)
    gen = torch.Generator().manual_seed(seed)
    centre = torch.full((2,), separation / (2 * math.sqrt(2)), dtype=torch.float64)
    parts = {"train": ([], []), "test": ([], [])}
    for label, count in ((-1.0, n // 2), (1.0, n - n // 2)):
        x = torch.randn(count, 2, generator=gen, dtype=torch.float64) + label * centre
        y = torch.full((count,), label, dtype=torch.float64)
        n_test = min(count - 1, max(1, int(test_fraction * count)))
        for name, sl in (("test", slice(None, n_test)), ("train", slice(n_test, None))):
            parts[name][0].append(x[sl])
            parts[name][1].append(y[sl])
    tensors = []
    for name in ("train", "test"):
        x, y = torch.cat(parts[name][0]), torch.cat(parts[name][1])
        order = torch.randperm(len(x), generator=gen)  # interleave the classes
        x = x[order] * stretch + offset
        tensors += [x.to(dtype), y[order].to(dtype)]
    return Split(*tensors)


def regression(
    n: int = 1000,
    d: int = 32,
    *,
    seed: int = 0,
    noise: float = 0.1,
    out_dim: int = 1,
    condition: float = 100.0,
    test_fraction: float = 0.25,
    dtype: torch.dtype = torch.float32,
) -> Split:
    r"""A linear regression set with correlated inputs, for the deep linear nets of seed 004.

    What it imitates: Arora, Cohen & Hazan (2018) trained linear networks with the
    :math:`\ell_4` loss :math:`\frac1m \sum_i \frac14 \|W x_i - y_i\|_4^4` on a regression
    problem from the UCI repository (gas sensor array readings: 128 strongly correlated
    features, a gas concentration as the target) and found that adding depth sped gradient
    descent up. Nothing is downloaded here; instead the set has the same ingredients (many
    correlated inputs, a continuous target that is nearly linear in them), with knobs:

    .. math::
        x = z\, \operatorname{diag}(\sigma)\, Q, \qquad y = x W^\star + \text{noise}\cdot\varepsilon,
        \qquad z, \varepsilon \sim \mathcal N(0, I)

    with :math:`Q` a random rotation and :math:`\sigma_j` geometric from 1 down to
    :math:`1/\sqrt{\text{condition}}`, so the inputs' covariance :math:`Q^\top
    \operatorname{diag}(\sigma^2) Q` has condition number `condition`, and a teacher
    :math:`W^\star` of shape ``(d, out_dim)`` with entries :math:`\mathcal N(0, 1/d)`. With
    ``noise=0`` a linear model fits exactly (the global minimum of any :math:`\ell_p` loss is 0).

    Returns a `Split` whose labels are float targets of shape ``(n, out_dim)``.
    """
    if n < 2:
        raise ValueError(f"Invalid n: {n!r} (must be >= 2)")
    if d < 1:
        raise ValueError(f"Invalid d: {d!r} (must be >= 1)")
    if out_dim < 1:
        raise ValueError(f"Invalid out_dim: {out_dim!r} (must be >= 1)")
    if noise < 0:
        raise ValueError(f"Invalid noise: {noise!r} (must be >= 0)")
    if condition < 1:
        raise ValueError(f"Invalid condition: {condition!r} (must be >= 1)")
    _check_test_fraction(test_fraction)
    gen = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    q, r = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=f64))
    q = q * torch.sign(torch.diagonal(r))  # a uniformly random rotation (Haar measure)
    sigma = torch.logspace(0.0, -0.5 * math.log10(condition), d, dtype=f64)
    x = torch.randn(n, d, generator=gen, dtype=f64) * sigma @ q  # (n, d)
    teacher = torch.randn(d, out_dim, generator=gen, dtype=f64) / math.sqrt(d)
    y = x @ teacher + noise * torch.randn(n, out_dim, generator=gen, dtype=f64)
    n_test = min(n - 1, max(1, int(round(test_fraction * n))))
    x, y = x.to(dtype), y.to(dtype)
    return Split(x[n_test:], y[n_test:], x[:n_test], y[:n_test])


def standardize(split: Split) -> Split:
    """Shift and scale every input variable to zero mean and unit variance over the training set.

    The test inputs get the training set's shift and scale (the test set must not leak into
    the model); constant variables are only shifted. Labels are passed through unchanged.
    This is what `digits(standardize=True)` does, for any `Split`.
    """
    mean, std = split.x_train.mean(0), split.x_train.std(0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return Split(
        (split.x_train - mean) / std, split.y_train, (split.x_test - mean) / std, split.y_test
    )


# --- Loaders for files already on disk ------------------------------------------------------

# IDX type codes (the third byte of the magic number) and their big-endian numpy types.
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped if its name ends in .gz; ValueError naming it if corrupt."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (EOFError, OSError, zlib.error) as err:  # truncated or not gzip at all
        raise ValueError(f"{path}: not a readable gzip file ({err})") from err


def read_idx(path: str | Path) -> Tensor:
    """Read one IDX file (MNIST's format), optionally gzipped, into a tensor of its own shape.

    The format: two zero bytes, a type code (0x08 unsigned byte, 0x09 signed byte, 0x0B int16,
    0x0C int32, 0x0D float32, 0x0E float64), the number of dimensions, each dimension as a
    big-endian int32, then the values in C order, big-endian.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic number {data[:4].hex()!r})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(data)} bytes)")
    shape = [int(s) for s in np.frombuffer(data, ">i4", count=ndim, offset=4)]
    item = np.dtype(_IDX_TYPES[data[2]])
    expected = header + math.prod(shape) * item.itemsize
    if len(data) != expected:
        raise ValueError(
            f"{path}: {len(data)} bytes, but shape {shape} of {item.name} needs {expected} "
            "(truncated or corrupt)"
        )
    values = np.frombuffer(data, item, offset=header).astype(item.newbyteorder("="))
    return torch.from_numpy(values.reshape(shape))


def _find(folder: Path, names: Sequence[str], what: str) -> Path:
    """The first of `names` (each also tried with .gz) present in `folder`."""
    for name in names:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(f"{what}: none of {', '.join(names)} (or .gz) in {folder}")


def _mnist_part(folder: Path, prefix: str, flatten: bool, dtype: torch.dtype):
    images_path = _find(
        folder, [f"{prefix}-images-idx3-ubyte", f"{prefix}-images.idx3-ubyte"], "MNIST images"
    )
    labels_path = _find(
        folder, [f"{prefix}-labels-idx1-ubyte", f"{prefix}-labels.idx1-ubyte"], "MNIST labels"
    )
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != torch.uint8 or images.dim() != 3:
        raise ValueError(
            f"{images_path}: expected uint8 images (n, rows, cols), got "
            f"{images.dtype} {tuple(images.shape)}"
        )
    if labels.dtype != torch.uint8 or labels.dim() != 1:
        raise ValueError(
            f"{labels_path}: expected uint8 labels (n,), got {labels.dtype} {tuple(labels.shape)}"
        )
    if len(images) != len(labels):
        raise ValueError(
            f"{labels_path}: {len(labels)} labels for {len(images)} images in {images_path}"
        )
    x = images.to(dtype) / 255.0
    return (x.flatten(1) if flatten else x), labels.long()


def load_mnist(
    folder: str | Path, *, flatten: bool = True, dtype: torch.dtype = torch.float32
) -> Split:
    """MNIST from the four IDX files in `folder`; nothing is downloaded.

    Looks for ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each possibly gzipped (``.gz``)
    or spelled with a dot (``train-images.idx3-ubyte``). Fashion-MNIST and KMNIST ship the same
    files. Pixels are scaled to [0, 1]; images are ``(n, 784)`` or, without `flatten`,
    ``(n, 28, 28)``. Use `standardize` for zero mean and unit variance.

    Raises FileNotFoundError naming what is missing, ValueError naming a malformed file.
    """
    folder = Path(folder)
    x_train, y_train = _mnist_part(folder, "train", flatten, dtype)
    x_test, y_test = _mnist_part(folder, "t10k", flatten, dtype)
    return Split(x_train, y_train, x_test, y_test)


_CIFAR_RECORD = 1 + 3 * 32 * 32  # one label byte, then 1024 red, 1024 green, 1024 blue bytes


def _cifar_file(path: Path) -> tuple[Tensor, Tensor]:
    data = _read_bytes(path)
    if len(data) == 0 or len(data) % _CIFAR_RECORD:
        raise ValueError(
            f"{path}: {len(data)} bytes is not a whole number of {_CIFAR_RECORD}-byte records "
            "(truncated, or not the binary version of CIFAR-10)"
        )
    records = torch.from_numpy(np.frombuffer(data, np.uint8).reshape(-1, _CIFAR_RECORD).copy())
    labels = records[:, 0].long()
    if int(labels.max()) > 9:
        raise ValueError(f"{path}: label {int(labels.max())} out of range 0-9 (not CIFAR-10?)")
    return records[:, 1:], labels


def load_cifar10(
    folder: str | Path, *, flatten: bool = True, dtype: torch.dtype = torch.float32
) -> Split:
    """CIFAR-10 from the binary version's files in `folder`; nothing is downloaded.

    Reads ``data_batch_1.bin`` ... ``data_batch_5.bin`` (training) and ``test_batch.bin``
    from `folder` or from its ``cifar-10-batches-bin`` subfolder. Each record is one label
    byte and 3,072 pixel bytes: the 32x32 red plane, then green, then blue, rows first.
    Pixels are scaled to [0, 1]; images are ``(n, 3072)`` or, without `flatten`,
    ``(n, 3, 32, 32)``. Use `standardize` for zero mean and unit variance.

    Raises FileNotFoundError naming a missing file, ValueError naming a malformed one.
    """
    folder = Path(folder)
    if not (folder / "test_batch.bin").is_file() and (folder / "cifar-10-batches-bin").is_dir():
        folder = folder / "cifar-10-batches-bin"
    parts = []
    for names in ([f"data_batch_{i}.bin" for i in range(1, 6)], ["test_batch.bin"]):
        xs, ys = zip(*(_cifar_file(folder / name) for name in names))
        x = torch.cat(xs).to(dtype) / 255.0
        parts += [x if flatten else x.reshape(-1, 3, 32, 32), torch.cat(ys)]
    return Split(*parts)
