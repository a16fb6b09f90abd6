"""Tests for coursekit.landscapes.slices: both paths against each other and closed forms."""

from __future__ import annotations

import pytest
import torch
from matplotlib.axes import Axes
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from coursekit import plotting
from coursekit.landscapes import (
    SliceInfo,
    SliceOptions,
    interpolate,
    plane_through,
    random_direction,
    slice_1d,
    slice_2d,
)

TIGHT = dict(rtol=1e-12, atol=1e-12)  # float64: the two paths differ only in rounding
LOOP, BATCHED = SliceOptions(method="loop"), SliceOptions(method="batched")


def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)).double()


def _cnn(seed: int = 0) -> nn.Module:
    """Conv, batch norm (with running statistics of its own) and a Linear head."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 3)
    ).double()
    model.train()
    with torch.no_grad():
        model(torch.randn(16, 1, 6, 6, dtype=torch.float64) + seed)  # move the running stats
    return model.eval()


class _Custom(nn.Module):
    """Not a Sequential: the first layer cannot be reused, both paths must still agree."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc1, self.fc2 = nn.Linear(6, 8), nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.tanh(self.fc1(x)))


MODELS = {"mlp": _mlp, "cnn": _cnn, "custom": lambda seed=0: _Custom().double()}


def _data(kind: str, n: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    shape = (n, 1, 6, 6) if kind == "cnn" else (n, 6)
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    return x, torch.randint(0, 3, (n,), generator=gen)


def _directions(model: nn.Module, count: int = 2, **kwargs) -> list[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(2)
    return [random_direction(model, generator=gen, **kwargs) for _ in range(count)]


def _loss_at(model, data, point: dict[str, torch.Tensor]) -> torch.Tensor:
    """The oracle: the loss with the parameters replaced, by a plain functional call."""
    x, y = data
    with torch.no_grad():
        return F.cross_entropy(functional_call(model, point, (x,)), y)


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _assert_unchanged(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert after.keys() == before.keys()
    for key, value in before.items():
        assert torch.equal(after[key], value), key


GRID = torch.linspace(-1.0, 1.0, 5)
BETAS = torch.linspace(-0.5, 1.5, 4)


@pytest.mark.parametrize("reuse", [True, False])
@pytest.mark.parametrize("kind", list(MODELS))
def test_batched_equals_loop_equals_oracle_in_2d(kind: str, reuse: bool) -> None:
    """Do both paths (with and without the reused first layer) give the oracle's losses?"""
    model, data = MODELS[kind](), _data(kind)
    d1, d2 = _directions(model)
    loop_options = SliceOptions(method="loop", reuse_first_layer=reuse)
    loop = slice_2d(model, F.cross_entropy, data, (d1, d2), GRID, BETAS, options=loop_options)
    options = SliceOptions(method="batched", chunk_size=3, reuse_first_layer=reuse)
    batched, info = slice_2d(
        model, F.cross_entropy, data, (d1, d2), GRID, BETAS, options=options, return_info=True
    )
    assert loop.shape == (5, 4) and loop.dtype == torch.float64
    torch.testing.assert_close(batched, loop, **TIGHT)
    assert info == SliceInfo("batched", 3, reuse and kind != "custom", 20)
    theta = dict(model.named_parameters())
    for i, j in [(0, 0), (4, 3), (1, 2)]:
        a, b = GRID[i].item(), BETAS[j].item()
        point = {n: theta[n] + a * d1[n] + b * d2[n] for n in theta}
        torch.testing.assert_close(loop[i, j], _loss_at(model, data, point), **TIGHT)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_batched_equals_loop_in_1d(kind: str) -> None:
    """Is the 1-D slice the same by both paths, for any chunk size?"""
    model, data = MODELS[kind](), _data(kind)
    (d,) = _directions(model, count=1)
    alphas = torch.linspace(-2.0, 2.0, 7)
    loop = slice_1d(model, F.cross_entropy, data, d, alphas, options=LOOP)
    assert loop.shape == (7,)
    for chunk in (1, 4, 100):
        options = SliceOptions(method="batched", chunk_size=chunk)
        batched = slice_1d(model, F.cross_entropy, data, d, alphas, options=options)
        torch.testing.assert_close(batched, loop, **TIGHT)


def test_zero_step_is_the_models_loss() -> None:
    """Is the slice at alpha = 0 the model's own loss, in float32 too?"""
    model, data = _mlp().float(), _data("mlp")
    data = (data[0].float(), data[1])
    (d,) = _directions(model, count=1)
    losses = slice_1d(model, F.cross_entropy, data, d, [-0.5, 0.0, 0.5])
    assert losses.dtype == torch.float32
    with torch.no_grad():
        expected = F.cross_entropy(model(data[0]), data[1])
    torch.testing.assert_close(losses[1], expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("method", ["loop", "batched"])
@pytest.mark.parametrize("reuse", [True, False])
def test_least_squares_slices_are_exact_parabolas(method: str, reuse: bool) -> None:
    """Does a linear least-squares loss give the closed-form quadratic in alpha and beta?

    With residual r = Xw + b - y and s_k = X dw_k + db_k, the loss along the plane is
    mean((r + alpha s_1 + beta s_2)^2), a quadratic in (alpha, beta).
    """
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(5, 1), nn.Flatten(0)).double()
    x, y = torch.randn(30, 5, dtype=torch.float64), torch.randn(30, dtype=torch.float64)
    d1, d2 = _directions(model, ignore_biases_and_norms=False)
    w, b = model[0].weight.detach(), model[0].bias.detach()
    r = x @ w[0] + b - y
    s1 = x @ d1["0.weight"][0] + d1["0.bias"]
    s2 = x @ d2["0.weight"][0] + d2["0.bias"]
    a = torch.linspace(-3.0, 3.0, 7, dtype=torch.float64)
    c = torch.linspace(-1.0, 2.0, 4, dtype=torch.float64)

    options = SliceOptions(method=method, reuse_first_layer=reuse)
    losses = slice_2d(model, F.mse_loss, (x, y), (d1, d2), a, c, options=options)
    resid = r + a[:, None, None] * s1 + c[None, :, None] * s2  # (A, B, N)
    torch.testing.assert_close(losses, (resid**2).mean(-1), **TIGHT)

    line = slice_1d(model, F.mse_loss, (x, y), d1, a, options=options)
    parabola = (r**2).mean() + 2 * a * (r * s1).mean() + a**2 * (s1**2).mean()
    torch.testing.assert_close(line, parabola, **TIGHT)


def test_filter_normalisation_matches_each_filter_and_zeroes_biases() -> None:
    """Has each direction filter the norm of the model's filter, and is every bias zero?"""
    model = _cnn()
    (d,) = _directions(model, count=1)
    for name, theta in model.named_parameters():
        if theta.ndim < 2:
            assert torch.count_nonzero(d[name]) == 0, name
        else:
            torch.testing.assert_close(
                d[name].flatten(1).norm(dim=1), theta.detach().flatten(1).norm(dim=1), **TIGHT
            )
        assert d[name].shape == theta.shape and d[name].dtype == theta.dtype


def test_layer_and_no_normalisation() -> None:
    """Does "layer" match whole tensors, None leave the draw, and biases count when asked?"""
    model = _mlp()
    theta = dict(model.named_parameters())
    (layer,) = _directions(model, count=1, normalize="layer", ignore_biases_and_norms=False)
    for name, value in theta.items():
        torch.testing.assert_close(layer[name].norm(), value.detach().norm(), **TIGHT)
    (raw,) = _directions(model, count=1, normalize=None)
    (again,) = _directions(model, count=1, normalize=None)
    assert all(torch.equal(raw[n], again[n]) for n in theta)  # seeded: reproducible
    assert torch.count_nonzero(raw["0.bias"]) == 0
    # The raw draw, rescaled per row, is the filter-normalised direction of the same seed.
    (filt,) = _directions(model, count=1)
    scale = theta["0.weight"].detach().norm(dim=1) / raw["0.weight"].norm(dim=1)
    torch.testing.assert_close(filt["0.weight"], raw["0.weight"] * scale[:, None], **TIGHT)


def test_interpolation_ends_are_the_two_models() -> None:
    """Are t = 0 and t = 1 the losses of the two models, batch-norm statistics included?"""
    model_a, model_b, data = _cnn(seed=0), _cnn(seed=1), _data("cnn")
    with torch.no_grad():
        expected = [F.cross_entropy(m(data[0]), data[1]) for m in (model_a, model_b)]
    before, ts = _snapshot(model_a), [0.0, 0.5, 1.0]
    for options in (LOOP, BATCHED):
        losses = interpolate(model_a, model_b, F.cross_entropy, data, ts, options=options)
        torch.testing.assert_close(losses[[0, 2]], torch.stack(expected), **TIGHT)
    _assert_unchanged(model_a, before)


def test_plane_through_puts_each_solution_at_its_point() -> None:
    """Do the returned coordinates of the three models give back their losses?"""
    models = [_mlp(seed) for seed in (0, 1, 2)]
    data = _data("mlp")
    with torch.no_grad():
        expected = torch.stack([F.cross_entropy(m(data[0]), data[1]) for m in models])
    _, points = plane_through(*models, F.cross_entropy, data, [0.0, 1.0], [0.0, 1.0])
    (xb, yb) = points["model_b"]
    assert points["model_0"] == (0.0, 0.0) and points["model_a"] == (1.0, 0.0) and yb > 0
    losses, _, info = plane_through(
        *models, F.cross_entropy, data, [0.0, 1.0, xb], [0.0, yb], return_info=True
    )
    assert losses.shape == (3, 2) and info.method in ("loop", "batched")
    torch.testing.assert_close(
        torch.stack([losses[0, 0], losses[1, 0], losses[2, 1]]), expected, **TIGHT
    )


def test_data_in_batches_gives_the_full_data_loss() -> None:
    """Is a slice over uneven batches (even a one-shot generator) the full-data slice?"""
    model, (x, y) = _mlp(), _data("mlp", n=50)
    (d,) = _directions(model, count=1)
    full = slice_1d(model, F.cross_entropy, (x, y), d, GRID, options=LOOP)
    batches = [(x[:7], y[:7]), (x[7:40], y[7:40]), (x[40:], y[40:])]
    for options in (LOOP, BATCHED, SliceOptions(method="batched", chunk_size=2)):
        one_shot = (batch for batch in batches)
        got = slice_1d(model, F.cross_entropy, one_shot, d, GRID, options=options)
        torch.testing.assert_close(got, full, **TIGHT)


def test_model_is_restored_even_after_an_error() -> None:
    """Are parameters, buffers and train flags exactly as before, also when the loss fails?"""
    model, data = _cnn(), _data("cnn")
    model.train()
    before = _snapshot(model)
    directions = _directions(model)
    for options in (LOOP, BATCHED, None):
        slice_2d(model, F.cross_entropy, data, directions, GRID, BETAS, options=options)
        _assert_unchanged(model, before)
        assert all(m.training for m in model.modules())

    calls = []

    def failing(outputs, targets):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom")
        return F.cross_entropy(outputs, targets)

    with pytest.raises(RuntimeError, match="boom"):
        slice_2d(model, failing, data, directions, GRID, BETAS, options=LOOP)
    _assert_unchanged(model, before)
    assert all(m.training for m in model.modules())


def test_the_default_on_a_cpu_is_the_loop() -> None:
    """Without options, does a CPU model take the loop, reusing the first layer?"""
    model, data = _mlp(), _data("mlp")
    directions = _directions(model)
    losses, info = slice_2d(model, F.cross_entropy, data, directions, GRID, BETAS, return_info=True)
    assert info == SliceInfo("loop", 1, True, len(GRID) * len(BETAS))
    batched = slice_2d(model, F.cross_entropy, data, directions, GRID, BETAS, options=BATCHED)
    torch.testing.assert_close(losses, batched, **TIGHT)


def test_chunk_size_follows_the_memory_budget() -> None:
    """Does a tiny budget give one point per chunk and a large one the whole grid?"""
    model, data = _mlp(), _data("mlp")
    (d,) = _directions(model, count=1)
    small, large = (
        slice_1d(
            model,
            F.cross_entropy,
            data,
            d,
            GRID,
            options=SliceOptions(method="batched", memory_budget=budget),
            return_info=True,
        )[1]
        for budget in (1, 2**30)
    )
    assert (small.chunk_size, large.chunk_size) == (1, len(GRID))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_slices_follow_the_models_device() -> None:
    """On CUDA, do both paths run there and agree with the CPU, the batched one by default?"""
    model, data = _mlp(), _data("mlp")
    directions = _directions(model)
    cpu = slice_2d(model, F.cross_entropy, data, directions, GRID, BETAS, options=LOOP)
    model.cuda()
    for options in (LOOP, BATCHED):
        got = slice_2d(model, F.cross_entropy, data, directions, GRID, BETAS, options=options)
        assert got.device.type == "cuda"
        torch.testing.assert_close(got.cpu(), cpu, rtol=1e-10, atol=1e-10)
    _, info = slice_2d(model, F.cross_entropy, data, directions, GRID, BETAS, return_info=True)
    assert info.method == "batched"


def _bad_calls():
    model, data = _mlp(), _data("mlp")
    (d,) = _directions(model, count=1)
    wrong_shape = dict(d, **{"2.weight": torch.zeros(2, 2, dtype=torch.float64)})
    missing = {k: v for k, v in d.items() if k != "0.bias"}
    extra = dict(d, extra=torch.zeros(1))
    ce = F.cross_entropy
    return {
        "shape": (lambda: slice_1d(model, ce, data, wrong_shape, GRID), "'2.weight'"),
        "missing": (lambda: slice_1d(model, ce, data, missing, GRID), "'0.bias'"),
        "extra": (lambda: slice_1d(model, ce, data, extra, GRID), "'extra'"),
        "d2 shape": (lambda: slice_2d(model, ce, data, (d, wrong_shape), GRID, GRID), "d2"),
        "one direction": (lambda: slice_2d(model, ce, data, (d,), GRID, GRID), "directions"),
        "empty alphas": (lambda: slice_1d(model, ce, data, d, []), "alphas"),
        "empty betas": (lambda: slice_2d(model, ce, data, (d, d), GRID, []), "betas"),
        "grid not 1-D": (lambda: slice_1d(model, ce, data, d, torch.zeros(2, 2)), "alphas"),
        "empty ts": (lambda: interpolate(model, _mlp(1), ce, data, []), "ts"),
        "method": (lambda: SliceOptions(method="fast"), "method"),
        "method auto": (lambda: SliceOptions(method="auto"), "method"),
        "chunk 0": (lambda: SliceOptions(chunk_size=0), "chunk_size"),
        "chunk float": (lambda: SliceOptions(chunk_size=2.5), "chunk_size"),
        "chunk bool": (lambda: SliceOptions(chunk_size=True), "chunk_size"),
        "budget": (lambda: SliceOptions(memory_budget=0), "memory_budget"),
        "options": (lambda: slice_1d(model, ce, data, d, GRID, options={}), "options"),
        "no data": (lambda: slice_1d(model, ce, [], d, GRID, options=LOOP), "data"),
        "normalize": (lambda: random_direction(model, normalize="unit"), "normalize"),
        "other model": (lambda: interpolate(model, _cnn(), ce, data, GRID), "model_b"),
        "same point": (
            lambda: plane_through(model, model, _mlp(1), ce, data, GRID, GRID),
            "model_a",
        ),
        "on the line": (
            lambda: plane_through(model, _mlp(1), model, ce, data, GRID, GRID),
            "model_b",
        ),
    }


@pytest.mark.parametrize("case", list(_bad_calls()))
def test_bad_arguments_name_the_culprit(case: str) -> None:
    """Is each bad argument a ValueError whose message names it?"""
    call, match = _bad_calls()[case]
    with pytest.raises(ValueError, match=match):
        call()


def test_plot_slice_1d_is_labelled() -> None:
    """Does the 1-D plot return labelled Axes, with a legend entry per labelled curve?"""
    ax = plotting.plot_slice_1d(GRID, GRID**2, label="d1", title="digits MLP")
    ax = plotting.plot_slice_1d(GRID, GRID**2 + 1, ax=ax, label="d2", title="digits MLP")
    assert isinstance(ax, Axes)
    assert (ax.get_title(), ax.get_xlabel(), ax.get_ylabel()) == ("digits MLP", r"$\alpha$", "loss")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["d1", "d2"]
    with pytest.raises(ValueError, match="alphas"):
        plotting.plot_slice_1d(GRID, GRID[:3])


@pytest.mark.parametrize("log_scale", [False, True])
def test_plot_slice_2d_marks_points_and_has_a_colorbar(log_scale: bool) -> None:
    """Does the contour plot carry labels, a colour bar and one legend entry per point?"""
    losses = 1.0 + GRID[:, None] ** 2 + BETAS[None, :] ** 2  # (A, B)
    points = {"model_0": (0.0, 0.0), "model_a": (1.0, 0.0)}
    ax = plotting.plot_slice_2d(
        GRID, BETAS, losses, points=points, log_scale=log_scale, levels=8, title="plane"
    )
    assert isinstance(ax, Axes)
    assert (ax.get_title(), ax.get_xlabel(), ax.get_ylabel()) == ("plane", r"$\alpha$", r"$\beta$")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["model_0", "model_a"]
    assert len(ax.figure.axes) == 2  # the plot and its colour bar
    assert ("log" in ax.figure.axes[1].get_ylabel()) == log_scale
    with pytest.raises(ValueError, match="shape"):
        plotting.plot_slice_2d(GRID, BETAS, losses.T)
    with pytest.raises(ValueError, match="positive"):
        plotting.plot_slice_2d(GRID, BETAS, losses - 5.0, log_scale=True)
