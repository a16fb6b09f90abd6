"""Are the synthetic sets what their docstrings promise, and do the loaders read real formats?"""

import gzip
import struct

import numpy as np
import pytest
import torch

from coursekit.data import (
    Split,
    load_cifar10,
    load_mnist,
    read_idx,
    regression,
    standardize,
    two_blobs,
)


def _second_moment_condition(x: torch.Tensor) -> float:
    """Condition number of (1/P) sum x x^T: the linear unit's Hessian up to a factor 2."""
    x = x.double()
    return torch.linalg.cond(x.T @ x / len(x)).item()


def test_two_blobs_shapes_labels_balance_and_seeds():
    """Are the blobs two balanced classes with float targets -1/+1, reproducible by seed?"""
    split = two_blobs(200, seed=3)
    assert split.x_train.shape == (150, 2) and split.x_test.shape == (50, 2)
    assert split.y_train.dtype == torch.float32 and split.y_train.shape == (150,)
    for y in (split.y_train, split.y_test):
        assert set(y.unique().tolist()) == {-1.0, 1.0}
        assert (y == 1).sum() == (y == -1).sum()
    again = two_blobs(200, seed=3)
    assert torch.equal(split.x_train, again.x_train) and torch.equal(split.y_test, again.y_test)
    assert not torch.equal(split.x_train, two_blobs(200, seed=4).x_train)
    # The classes sit on either side of the diagonal x1 + x2 = 0: their means say so.
    mean_red = split.x_train[split.y_train == 1].mean(0)
    assert (mean_red > 0.5).all() and (split.x_train[split.y_train == -1].mean(0) < -0.5).all()


def test_badly_scaled_blobs_are_worse_conditioned_than_standardised_ones():
    """Does an offset and unequal scales raise the Hessian's condition number, and
    standardisation bring it back down (lecture 1)?"""
    bad = two_blobs(400, seed=0, mean_offset=(8.0, 8.0), scale=(1.0, 0.5))
    fixed = standardize(bad)
    cond_bad = _second_moment_condition(bad.x_train)
    cond_fixed = _second_moment_condition(fixed.x_train)
    assert cond_bad > 30 * cond_fixed
    assert cond_fixed < 5  # what remains is the correlation the two class means put in
    torch.testing.assert_close(fixed.x_train.mean(0), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(fixed.x_train.std(0), torch.ones(2))
    # Only the inputs move: the transformation is affine and the labels are untouched.
    scale = bad.x_train.std(0)
    torch.testing.assert_close(fixed.x_test, (bad.x_test - bad.x_train.mean(0)) / scale)
    assert torch.equal(fixed.y_train, bad.y_train)


def test_regression_is_linear_with_the_requested_conditioning():
    """Is y linear in x (exactly without noise), with the covariance condition asked for?"""
    split = regression(400, 6, seed=1, noise=0.0, out_dim=2, dtype=torch.float64)
    assert split.x_train.shape == (300, 6) and split.y_train.shape == (300, 2)
    solution = torch.linalg.lstsq(split.x_train, split.y_train).solution
    torch.testing.assert_close(split.x_test @ solution, split.y_test)
    assert torch.equal(
        split.x_train, regression(400, 6, seed=1, noise=0.0, out_dim=2, dtype=torch.float64).x_train
    )
    big = regression(20_000, 5, seed=0, condition=100.0, dtype=torch.float64)
    cond = torch.linalg.cond(torch.cov(big.x_train.T)).item()
    assert 70 < cond < 140
    noisy = regression(20_000, 5, seed=0, noise=0.5, dtype=torch.float64)
    residual = (
        noisy.y_train - noisy.x_train @ torch.linalg.lstsq(noisy.x_train, noisy.y_train).solution
    )
    assert residual.std().item() == pytest.approx(0.5, rel=0.05)


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: two_blobs(3), "n"),
        (lambda: two_blobs(separation=-1.0), "separation"),
        (lambda: two_blobs(scale=(1.0, 2.0, 3.0)), "scale"),
        (lambda: two_blobs(test_fraction=1.0), "test_fraction"),
        (lambda: regression(d=0), "d"),
        (lambda: regression(noise=-0.1), "noise"),
        (lambda: regression(condition=0.5), "condition"),
        (lambda: regression(out_dim=0), "out_dim"),
    ],
)
def test_bad_arguments_raise_value_errors_naming_them(call, name):
    with pytest.raises(ValueError, match=f"Invalid {name}:"):
        call()


# --- IDX (MNIST) ---------------------------------------------------------------------------


def _idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file holding `array` of unsigned bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write(path, data: bytes) -> None:
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def _fake_mnist(folder, suffix="", n_train=5, n_test=3):
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test),
    }
    for name, array in arrays.items():
        _write(folder / (name + suffix), _idx_bytes(array))
    return arrays


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_load_mnist_round_trips_idx_files(tmp_path, suffix):
    """Does the loader give back the pixels (scaled to [0, 1]) and labels that were written?"""
    arrays = _fake_mnist(tmp_path, suffix)
    split = load_mnist(tmp_path)
    assert isinstance(split, Split)
    expected = torch.tensor(arrays["train-images-idx3-ubyte"].reshape(5, 784) / 255.0)
    torch.testing.assert_close(split.x_train, expected.float())
    assert torch.equal(split.y_test, torch.tensor(arrays["t10k-labels-idx1-ubyte"]))
    assert split.y_train.dtype == torch.long and split.x_test.shape == (3, 784)
    assert load_mnist(tmp_path, flatten=False).x_train.shape == (5, 28, 28)


def test_read_idx_handles_every_type_code(tmp_path):
    """Are the non-byte IDX types read with their big-endian layout?"""
    values = (np.arange(6) - 3).astype(">i4").reshape(2, 3)
    (tmp_path / "a.idx").write_bytes(
        bytes([0, 0, 0x0C, 2]) + struct.pack(">2i", 2, 3) + values.tobytes()
    )
    assert torch.equal(read_idx(tmp_path / "a.idx"), torch.tensor(values.astype(np.int32)))
    floats = np.array([1.5, -2.25], dtype=">f8")
    (tmp_path / "b.idx").write_bytes(
        bytes([0, 0, 0x0E, 1]) + struct.pack(">i", 2) + floats.tobytes()
    )
    assert read_idx(tmp_path / "b.idx").tolist() == [1.5, -2.25]


def test_load_mnist_names_missing_and_malformed_files(tmp_path):
    """Do missing, truncated and foreign files raise errors that name the file?"""
    _fake_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        load_mnist(tmp_path)

    _fake_mnist(tmp_path)
    images = tmp_path / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-10])
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.*truncated"):
        load_mnist(tmp_path)

    images.write_bytes(b"PK\x03\x04 not an idx file")
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.*not an IDX file"):
        load_mnist(tmp_path)

    images.unlink()
    _fake_mnist(tmp_path, ".gz")
    gz = tmp_path / "train-images-idx3-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[:40])
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz"):
        load_mnist(tmp_path)

    _fake_mnist(tmp_path, "", n_train=5)
    _write(tmp_path / "train-labels-idx1-ubyte", _idx_bytes(np.zeros(4)))
    with pytest.raises(ValueError, match="4 labels for 5 images"):
        load_mnist(tmp_path)


# --- CIFAR-10, binary version --------------------------------------------------------------


def _fake_cifar(folder, records=3):
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        labels = rng.integers(0, 10, records)
        pixels = rng.integers(0, 256, (records, 3072))
        rows = np.concatenate([labels[:, None], pixels], axis=1).astype(np.uint8)
        (folder / name).write_bytes(rows.tobytes())
        written[name] = (labels, pixels)
    return written


def test_load_cifar10_round_trips_binary_batches(tmp_path):
    """Are the five training batches concatenated in order, channels red-green-blue?"""
    written = _fake_cifar(tmp_path / "cifar-10-batches-bin")
    split = load_cifar10(tmp_path)  # finds the standard subfolder
    assert split.x_train.shape == (15, 3072) and split.x_test.shape == (3, 3072)
    labels = np.concatenate([written[f"data_batch_{i}.bin"][0] for i in range(1, 6)])
    assert torch.equal(split.y_train, torch.tensor(labels))
    first = torch.tensor(written["data_batch_1.bin"][1][0] / 255.0).float()
    torch.testing.assert_close(split.x_train[0], first)
    images = load_cifar10(tmp_path / "cifar-10-batches-bin", flatten=False).x_test
    assert images.shape == (3, 3, 32, 32)
    red_top_left = written["test_batch.bin"][1][0, 0] / 255.0
    assert images[0, 0, 0, 0].item() == pytest.approx(red_top_left)
    green_top_left = written["test_batch.bin"][1][0, 1024] / 255.0
    assert images[0, 1, 0, 0].item() == pytest.approx(green_top_left)


def test_load_cifar10_names_missing_and_malformed_files(tmp_path):
    """Do a missing batch, a truncated one and a bad label raise errors naming the file?"""
    _fake_cifar(tmp_path)
    (tmp_path / "data_batch_3.bin").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3.bin"):
        load_cifar10(tmp_path)
    _fake_cifar(tmp_path)
    batch = tmp_path / "test_batch.bin"
    batch.write_bytes(batch.read_bytes()[:-1])
    with pytest.raises(ValueError, match="test_batch.bin.*truncated"):
        load_cifar10(tmp_path)
    batch.write_bytes(bytes([10]) + bytes(3072))
    with pytest.raises(ValueError, match="test_batch.bin.*label 10"):
        load_cifar10(tmp_path)
