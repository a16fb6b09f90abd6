"""Is training K stacked models with one optimizer the same as training each model alone?"""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import coursekit.optim as ck
from coursekit.ensembles import (
    Ensemble,
    evaluate,
    minibatches,
    train_ensemble,
    train_to_plateau,
)
from coursekit.models import MLP
from coursekit.training import train

F64 = torch.float64
K, N, STEPS, BATCH = 3, 22, 6, 8

# One row per optimizer family, with the options that give each its own state to check.
OPTIMIZERS = [
    (ck.SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2)),
    (ck.SGD, dict(lr=0.1, momentum=0.9, dampening=0.3)),
    (ck.Adam, dict(lr=0.01, weight_decay=1e-2, amsgrad=True)),
    (ck.AdamW, dict(lr=0.01)),
    (ck.Adamax, dict(lr=0.01)),
    (ck.Adagrad, dict(lr=0.1, lr_decay=0.01)),
    (ck.RMSprop, dict(lr=0.01, momentum=0.5, centered=True)),
    (ck.Adadelta, dict(lr=1.0)),
    (ck.Rprop, dict(lr=0.01)),
    (ck.AveragedMomentumSGD, dict(lr=0.1)),
    (ck.SutskeverNesterov, dict(lr=0.1)),
    (torch.optim.Adam, dict(lr=0.01)),
]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Run these tiny models on one thread: on a small machine shared with other jobs, a second
    OpenMP thread makes each step wait (measured 10-40x slower), and the numbers are the same."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _problem(dtype=F64, activation="tanh", seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(N, 5, generator=gen, dtype=dtype)
    y = torch.randint(0, 3, (N,), generator=gen)
    models = [
        MLP([5, 8, 3], activation, generator=torch.Generator().manual_seed(100 + k)).to(dtype)
        for k in range(K)
    ]
    return x, y, models


def _train_alone(model, make_optimizer, x, y, batches):
    """The reference: one model, its own optimizer, the given batches, a closure per step."""
    optimizer = make_optimizer(model.parameters())
    losses = []
    for idx in batches:

        def closure(idx=idx):
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            losses.append(loss.detach())
            return loss

        optimizer.step(closure)
    return torch.stack(losses)


def _assert_same_weights(ensemble, models, **tolerance):
    for trained, reference in zip(ensemble.unstack(), models):
        for (name, p), (_, q) in zip(trained.named_parameters(), reference.named_parameters()):
            torch.testing.assert_close(p, q, msg=name, **tolerance)


@pytest.mark.parametrize(
    "cls, kwargs",
    OPTIMIZERS,
    ids=[f"{c.__module__.split('.')[0]}.{c.__name__}-{i}" for i, (c, _) in enumerate(OPTIMIZERS)],
)
def test_ensemble_training_equals_each_model_trained_alone_float64(cls, kwargs):
    """With any element-wise optimizer, do the K slices follow the K separate runs exactly?"""
    x, y, models = _problem()
    references = copy.deepcopy(models)
    ensemble = Ensemble(models)
    losses = train_ensemble(
        ensemble,
        cls(ensemble.parameters(), **kwargs),
        F.cross_entropy,
        x,
        y,
        steps=STEPS,
        batch_size=BATCH,
        seed=7,
    )
    assert losses.shape == (STEPS, K)
    batches = list(minibatches(N, BATCH, STEPS, seed=7))
    for k, model in enumerate(references):
        alone = _train_alone(model, lambda p: cls(p, **kwargs), x, y, batches)
        torch.testing.assert_close(losses[:, k], alone, rtol=1e-12, atol=1e-12)
    _assert_same_weights(ensemble, references, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cls, kwargs", [OPTIMIZERS[0], OPTIMIZERS[2]], ids=["SGD", "Adam"])
def test_ensemble_training_equals_each_model_trained_alone_float32(cls, kwargs):
    """In float32 too, up to rounding.

    The batched kernels add the same products as K separate calls, possibly in another order,
    so each step differs by a few float32 ulps (~1e-7 relative); over 30 steps of a smooth
    (tanh) net these stay well inside rtol=1e-4, atol=1e-5. A real difference in the update
    rule or the batches would show at the scale of the step, lr * gradient ~ 1e-2.
    """
    x, y, models = _problem(torch.float32)
    references = copy.deepcopy(models)
    ensemble = Ensemble(models)
    train_ensemble(
        ensemble,
        cls(ensemble.parameters(), **kwargs),
        F.cross_entropy,
        x,
        y,
        steps=30,
        batch_size=BATCH,
        seed=1,
    )
    batches = list(minibatches(N, BATCH, 30, seed=1))
    for model in references:
        _train_alone(model, lambda p: cls(p, **kwargs), x, y, batches)
    _assert_same_weights(ensemble, references, rtol=1e-4, atol=1e-5)


def test_shared_batches_follow_coursekit_training_train():
    """Is the shared minibatch order the one `coursekit.training.train` uses with that seed?"""
    x, y, models = _problem()
    references = copy.deepcopy(models)
    ensemble = Ensemble(models)
    steps_per_epoch = -(-N // BATCH)
    train_ensemble(
        ensemble,
        ck.SGD(ensemble.parameters(), lr=0.1, momentum=0.9),
        F.cross_entropy,
        x,
        y,
        steps=3 * steps_per_epoch,
        batch_size=BATCH,
        seed=4,
    )
    for model in references:
        train(
            model,
            ck.SGD(model.parameters(), lr=0.1, momentum=0.9),
            F.cross_entropy,
            x,
            y,
            epochs=3,
            batch_size=BATCH,
            seed=4,
        )
    _assert_same_weights(ensemble, references, rtol=1e-12, atol=1e-12)


def test_independent_batches_give_each_model_its_own_order():
    """With independent_batches, does model k see the k-th row of the batch indices?"""
    x, y, models = _problem()
    references = copy.deepcopy(models)
    ensemble = Ensemble(models)
    train_ensemble(
        ensemble,
        ck.Adam(ensemble.parameters(), lr=0.01),
        F.cross_entropy,
        x,
        y,
        steps=STEPS,
        batch_size=BATCH,
        independent_batches=True,
        seed=2,
    )
    batches = list(minibatches(N, BATCH, STEPS, seed=2, k=K))
    assert batches[0].shape == (K, BATCH) and not torch.equal(batches[0][0], batches[0][1])
    for k, model in enumerate(references):
        _train_alone(model, lambda p: ck.Adam(p, lr=0.01), x, y, [b[k] for b in batches])
    _assert_same_weights(ensemble, references, rtol=1e-12, atol=1e-12)


def test_full_batch_training_is_gradient_descent_on_every_model():
    """Without batch_size, is every step a step on the whole data set?"""
    x, y, models = _problem()
    references = copy.deepcopy(models)
    ensemble = Ensemble(models)
    train_ensemble(ensemble, ck.SGD(ensemble.parameters(), lr=0.5), F.cross_entropy, x, y, steps=4)
    everything = [torch.arange(N)] * 4
    for model in references:
        _train_alone(model, lambda p: ck.SGD(p, lr=0.5), x, y, everything)
    _assert_same_weights(ensemble, references, rtol=1e-12, atol=1e-12)


def _plateau_alone(model, make_optimizer, x, y, *, rel_tol, window, max_steps, weight_decay):
    """The reference: a plain loop training one model full batch on cross-entropy plus the L2
    penalty, stopping at the first t >= window whose objective improved by less than
    rel_tol * J(t - window) since t - window. Returns the objectives and the stop."""
    optimizer = make_optimizer(model.parameters())
    objectives = []
    for t in range(max_steps + 1):
        optimizer.zero_grad()
        penalty = sum((p * p).sum() for p in model.parameters())
        objective = F.cross_entropy(model(x), y) + weight_decay / 2 * penalty
        objectives.append(objective.item())
        if (
            t >= window
            and objectives[t - window] - objectives[t] < rel_tol * objectives[t - window]
        ):
            return objectives, t
        if t == max_steps:
            return objectives, None
        objective.backward()
        optimizer.step()


@pytest.mark.parametrize(
    "cls, kwargs", [(ck.Rprop, dict(lr=0.01)), (ck.SGD, dict(lr=0.5, momentum=0.9))]
)
def test_train_to_plateau_stops_each_model_where_a_plain_loop_stops(cls, kwargs):
    """Against a plain loop per model: the same objectives step by step, the same stopping step
    for each model, and each model returned with the parameters the loop stopped at, even
    though the ensemble kept updating it while the others trained."""
    x, y, models = _problem()
    references = copy.deepcopy(models)
    ensemble = Ensemble(models)
    options = dict(rel_tol=1e-2, window=5, max_steps=400, weight_decay=1e-2)
    plateau = train_to_plateau(
        ensemble, cls(ensemble.parameters(), **kwargs), F.cross_entropy, x, y, **options
    )
    stops = []
    for k, model in enumerate(references):
        objectives, stop = _plateau_alone(model, lambda p: cls(p, **kwargs), x, y, **options)
        assert stop is not None and plateau.converged[k]
        assert plateau.stopped[k].item() == stop
        torch.testing.assert_close(
            plateau.losses[: stop + 1, k], torch.tensor(objectives, dtype=F64), rtol=1e-12, atol=0
        )
        stops.append(stop)
    assert len(set(stops)) > 1  # the models stop at different steps: the restore is exercised
    assert plateau.losses.shape == (max(stops) + 1, K)
    _assert_same_weights(ensemble, references, rtol=1e-12, atol=1e-12)


def test_train_to_plateau_reports_models_that_never_level_off():
    """Against the plain loop: with max_steps too small for the criterion, every model runs
    max_steps updates, is marked unconverged, and holds its last parameters."""
    x, y, models = _problem()
    references = copy.deepcopy(models)
    ensemble = Ensemble(models)
    plateau = train_to_plateau(
        ensemble,
        ck.SGD(ensemble.parameters(), lr=0.1),
        F.cross_entropy,
        x,
        y,
        rel_tol=1e-9,
        window=3,
        max_steps=8,
    )
    assert not plateau.converged.any() and plateau.stopped.tolist() == [8] * K
    for model in references:
        _, stop = _plateau_alone(
            model,
            lambda p: ck.SGD(p, lr=0.1),
            x,
            y,
            rel_tol=1e-9,
            window=3,
            max_steps=8,
            weight_decay=0.0,
        )
        assert stop is None
    _assert_same_weights(ensemble, references, rtol=1e-12, atol=1e-12)


def test_forward_shapes_per_model_inputs_and_unstack_round_trip():
    """Does slice k of the output come from model k, for shared and for per-model inputs?"""
    x, _, models = _problem()
    ensemble = Ensemble(models)
    assert len(ensemble) == K
    assert ensemble.params["net.0.weight"].shape == (K, 8, 5)
    out = ensemble(x)
    assert out.shape == (K, N, 3)
    xs = torch.randn(K, 4, 5, dtype=F64)
    per_model = ensemble(xs, per_model=True)
    for k, model in enumerate(models):
        torch.testing.assert_close(out[k], model(x))
        torch.testing.assert_close(per_model[k], model(xs[k]))
    for restored, model in zip(ensemble.unstack(), models):
        assert isinstance(restored, MLP)
        for p, q in zip(restored.parameters(), model.parameters()):
            assert torch.equal(p, q) and p.data_ptr() != q.data_ptr()
    with pytest.raises(ValueError, match="Invalid x:"):
        ensemble(torch.randn(K + 1, 4, 5, dtype=F64), per_model=True)


def test_buffers_are_stacked_and_used():
    """Are buffers (batch norm's running statistics, eval mode) stacked per model?"""
    models = []
    for k in range(K):
        torch.manual_seed(k)
        net = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3)).eval()
        net[1].running_mean.normal_()
        net[1].running_var.uniform_(0.5, 2.0)
        models.append(net)
    ensemble = Ensemble(models)
    assert ensemble.stacked_buffers["1.running_mean"].shape == (K, 3)
    x = torch.randn(6, 4)
    out = ensemble(x)
    for k, net in enumerate(models):
        torch.testing.assert_close(out[k], net(x))
    restored = ensemble.unstack()[1]
    assert not restored.training
    assert torch.equal(restored[1].running_var, models[1][1].running_var)


def test_evaluate_gives_each_models_loss_and_accuracy():
    """Are the per-model test loss and accuracy those of the models on their own, chunked or not?"""
    x, y, models = _problem()
    ensemble = Ensemble(models)
    scores = evaluate(ensemble, x, y)
    chunked = evaluate(ensemble, x, y, batch_size=5)
    for k, model in enumerate(models):
        with torch.no_grad():
            logits = model(x)
        assert scores.loss[k].item() == pytest.approx(F.cross_entropy(logits, y).item())
        accuracy = (logits.argmax(1) == y).double().mean()
        assert scores.accuracy[k].item() == pytest.approx(accuracy.item())
    torch.testing.assert_close(chunked.loss, scores.loss)
    torch.testing.assert_close(chunked.accuracy, scores.accuracy)
    regression = evaluate(ensemble, x, torch.randn(N, 3, dtype=F64), F.mse_loss)
    assert regression.accuracy is None and regression.loss.shape == (K,)


def test_bad_arguments_raise_value_errors_naming_them():
    x, y, models = _problem()
    with pytest.raises(ValueError, match="Invalid models:"):
        Ensemble([])
    with pytest.raises(ValueError, match="Invalid models:"):
        Ensemble([models[0], MLP([5, 9, 3]).double()])
    ensemble = Ensemble(models)
    opt = ck.SGD(ensemble.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="Invalid steps:"):
        train_ensemble(ensemble, opt, F.cross_entropy, x, y, steps=0)
    with pytest.raises(ValueError, match="Invalid batch_size:"):
        train_ensemble(ensemble, opt, F.cross_entropy, x, y, steps=1, batch_size=0)
    with pytest.raises(ValueError, match="Invalid batch_size:"):
        evaluate(ensemble, x, y, batch_size=0)
    for name, value in [("rel_tol", 0.0), ("window", 0), ("max_steps", 0), ("weight_decay", -1.0)]:
        with pytest.raises(ValueError, match=f"Invalid {name}:"):
            train_to_plateau(ensemble, opt, F.cross_entropy, x, y, **{name: value})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_ensemble_trains_on_cuda_like_on_cpu():
    """Is the ensemble device-agnostic: same run on the GPU, data moved for the caller?"""
    x, y, models = _problem()
    gpu = Ensemble(copy.deepcopy(models)).to("cuda")
    cpu = Ensemble(models)
    for ensemble in (gpu, cpu):
        train_ensemble(
            ensemble,
            ck.Adam(ensemble.parameters(), lr=0.01),
            F.cross_entropy,
            x,
            y,
            steps=STEPS,
            batch_size=BATCH,
        )
    for name, p in gpu.params.items():
        torch.testing.assert_close(p.cpu(), cpu.params[name], rtol=1e-10, atol=1e-10)
