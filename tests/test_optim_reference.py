"""Is every coursekit optimizer equal to torch.optim, step for step?

torch.optim is the oracle (as micrograd tests its engine against PyTorch): the same model, the
same data and the same hyper-parameters must give the same parameters after every step, for
both of coursekit's paths, in float32 and float64, with param groups, parameters without a
gradient, a state_dict round trip and a learning-rate scheduler.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import coursekit.optim as ck

# (name, constructor kwargs). Each row is run against torch.optim.<name> with the same kwargs.
CASES = [
    ("SGD", dict(lr=0.05)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.5, maximize=True)),
    ("Rprop", dict()),
    ("Rprop", dict(lr=0.003, etas=(0.3, 1.5), step_sizes=(1e-4, 0.1))),
    ("Rprop", dict(maximize=True)),
    ("Adagrad", dict(lr=0.1)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01, weight_decay=0.01, initial_accumulator_value=0.1)),
    ("Adagrad", dict(lr=0.1, maximize=True)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, centered=True, momentum=0.9, weight_decay=0.01)),
    ("RMSprop", dict(lr=0.01, alpha=0.9, centered=True, maximize=True)),
    ("Adadelta", dict()),
    ("Adadelta", dict(lr=0.5, rho=0.8, eps=1e-5, weight_decay=0.01)),
    ("Adadelta", dict(maximize=True)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), amsgrad=True, weight_decay=0.01)),
    ("Adam", dict(lr=0.01, maximize=True, decoupled_weight_decay=True, weight_decay=0.1)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, amsgrad=True, weight_decay=0.1, maximize=True)),
    ("Adamax", dict()),
    ("Adamax", dict(lr=0.01, betas=(0.5, 0.9), weight_decay=0.01)),
    ("Adamax", dict(maximize=True)),
]
IDS = [f"{name}-{i}" for i, (name, _) in enumerate(CASES)]
STEPS = 25


def tolerance(dtype: torch.dtype) -> dict[str, float]:
    return dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-11, atol=1e-12)


class Net(nn.Module):
    """A small MLP plus a parameter that never receives a gradient."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))
        self.unused = nn.Parameter(torch.ones(4))


def make_model(dtype: torch.dtype, seed: int = 0) -> Net:
    torch.manual_seed(seed)
    return Net().to(dtype)


def batch(step: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(16, 5, generator=g, dtype=dtype)
    y = torch.randn(16, 3, generator=g, dtype=dtype)
    return x, y


def train(model: Net, opt: torch.optim.Optimizer, steps: range, scheduler=None) -> list:
    """Run `steps`, returning a copy of the parameters after each step."""
    dtype = model.unused.dtype
    history = []
    for k in steps:
        x, y = batch(k, dtype)
        opt.zero_grad()
        nn.functional.mse_loss(model.body(x), y).backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()
        history.append([p.detach().clone() for p in model.parameters()])
    return history


def assert_same(history_a: list, history_b: list, dtype: torch.dtype) -> None:
    assert len(history_a) == len(history_b) > 0
    for step, (a, b) in enumerate(zip(history_a, history_b)):
        for pa, pb in zip(a, b):
            torch.testing.assert_close(
                pa, pb, **tolerance(dtype), msg=lambda m, step=step: f"step {step}: {m}"
            )


def param_groups(model: Net) -> list[dict]:
    # Two groups with different learning rates, so per-group hyper-parameters are honoured.
    return [
        {"params": list(model.body[0].parameters()) + [model.unused]},
        {"params": model.body[2].parameters(), "lr": 0.002},
    ]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("foreach", [False, True], ids=["single", "foreach"])
@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_matches_torch_step_for_step(name, kwargs, foreach, dtype):
    ref_model, our_model = make_model(dtype), make_model(dtype)
    ref = getattr(torch.optim, name)(param_groups(ref_model), foreach=False, **kwargs)
    ours = getattr(ck, name)(param_groups(our_model), foreach=foreach, **kwargs)
    assert_same(train(our_model, ours, range(STEPS)), train(ref_model, ref, range(STEPS)), dtype)
    # Same state names as torch (for the parameters that have tensors in their state).
    for p_ours, p_ref in zip(our_model.body.parameters(), ref_model.body.parameters()):
        tensors = lambda st: {k for k, v in st.items() if torch.is_tensor(v)}  # noqa: E731
        assert tensors(ours.state.get(p_ours, {})) == tensors(ref.state.get(p_ref, {}))
    # The unused parameter has no gradient: neither optimizer may touch it or give it state.
    assert torch.equal(our_model.unused, torch.ones(4, dtype=dtype))
    assert our_model.unused not in ours.state or not any(
        torch.is_tensor(v) for v in ours.state[our_model.unused].values()
    )


@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_foreach_equals_single_tensor(name, kwargs):
    """The fast path is the slow path, computed faster (float64, so rounding cannot hide a bug)."""
    dtype = torch.float64
    a, b = make_model(dtype), make_model(dtype)
    opt_a = getattr(ck, name)(a.parameters(), foreach=False, **kwargs)
    opt_b = getattr(ck, name)(b.parameters(), foreach=True, **kwargs)
    assert_same(train(a, opt_a, range(STEPS)), train(b, opt_b, range(STEPS)), dtype)


@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_state_dict_resume_gives_identical_continuation(name, kwargs):
    dtype = torch.float64
    straight = make_model(dtype)
    opt = getattr(ck, name)(straight.parameters(), **kwargs)
    full = train(straight, opt, range(20))

    first = make_model(dtype)
    opt1 = getattr(ck, name)(first.parameters(), **kwargs)
    train(first, opt1, range(10))
    saved_model = copy.deepcopy(first.state_dict())
    saved_opt = copy.deepcopy(opt1.state_dict())

    resumed = make_model(dtype, seed=123)  # different weights: they must be overwritten
    resumed.load_state_dict(saved_model)
    opt2 = getattr(ck, name)(resumed.parameters(), **kwargs)
    opt2.load_state_dict(saved_opt)
    rest = train(resumed, opt2, range(10, 20))
    for a, b in zip(rest, full[10:]):
        for pa, pb in zip(a, b):
            assert torch.equal(pa, pb)


@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_state_dict_is_interchangeable_with_torch(name, kwargs):
    """A torch.optim state_dict loads into coursekit and the run continues as torch's would."""
    dtype = torch.float64
    torch_model = make_model(dtype)
    torch_opt = getattr(torch.optim, name)(torch_model.parameters(), foreach=False, **kwargs)
    train(torch_model, torch_opt, range(8))

    ours_model = make_model(dtype)
    ours_model.load_state_dict(torch_model.state_dict())
    ours_opt = getattr(ck, name)(ours_model.parameters(), **kwargs)
    ours_opt.load_state_dict(copy.deepcopy(torch_opt.state_dict()))
    assert_same(
        train(ours_model, ours_opt, range(8, 16)),
        train(torch_model, torch_opt, range(8, 16)),
        dtype,
    )


@pytest.mark.parametrize(
    "scheduler",
    [
        lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=5, gamma=0.5),
        lambda o: torch.optim.lr_scheduler.OneCycleLR(
            o, max_lr=0.05, total_steps=STEPS, cycle_momentum=False
        ),
        lambda o: torch.optim.lr_scheduler.LambdaLR(o, ck.inverse_sqrt_decay()),
    ],
    ids=["StepLR", "OneCycleLR", "LambdaLR-inverse-sqrt"],
)
@pytest.mark.parametrize("name", ["SGD", "Adam", "RMSprop", "Adagrad"])
def test_schedulers_drive_coursekit_like_torch(name, scheduler):
    kwargs = dict(lr=0.01, momentum=0.9) if name in ("SGD", "RMSprop") else dict(lr=0.01)
    dtype = torch.float64
    ref_model, our_model = make_model(dtype), make_model(dtype)
    ref = getattr(torch.optim, name)(ref_model.parameters(), **kwargs)
    ours = getattr(ck, name)(our_model.parameters(), **kwargs)
    assert_same(
        train(our_model, ours, range(STEPS), scheduler(ours)),
        train(ref_model, ref, range(STEPS), scheduler(ref)),
        dtype,
    )


def test_defaults_match_torch():
    import inspect

    for name in ["SGD", "Rprop", "Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW", "Adamax"]:
        ours = inspect.signature(getattr(ck, name)).parameters
        theirs = inspect.signature(getattr(torch.optim, name)).parameters
        for arg, p in ours.items():
            if arg == "fused" and arg not in theirs:
                # coursekit's one extension: a fused step for the optimizers torch has none for.
                assert p.default is None and p.kind == p.KEYWORD_ONLY
                continue
            assert arg in theirs, f"{name} has argument {arg} that torch.optim.{name} lacks"
            assert p.default == theirs[arg].default, f"{name}({arg}) default differs from torch"
        # The positional order of the shared arguments is torch's.
        positional = [a for a, p in ours.items() if p.kind == p.POSITIONAL_OR_KEYWORD]
        assert positional == [a for a in theirs if a in positional]


@pytest.mark.parametrize(
    "name,kwargs,param",
    [
        ("SGD", dict(lr=-1.0), "lr"),
        ("SGD", dict(lr=0.1, momentum=-0.5), "momentum"),
        ("SGD", dict(lr=0.1, weight_decay=-1e-3), "weight_decay"),
        ("SGD", dict(lr=0.1, nesterov=True), "nesterov"),
        ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), "nesterov"),
        ("Rprop", dict(etas=(1.5, 1.2)), "etas"),
        ("Rprop", dict(step_sizes=(1.0, 0.1)), "step_sizes"),
        ("Adagrad", dict(lr_decay=-1.0), "lr_decay"),
        ("Adagrad", dict(initial_accumulator_value=-1.0), "initial_accumulator_value"),
        ("Adagrad", dict(eps=-1.0), "eps"),
        ("RMSprop", dict(alpha=-0.1), "alpha"),
        ("RMSprop", dict(momentum=-0.1), "momentum"),
        ("Adadelta", dict(rho=1.5), "rho"),
        ("Adam", dict(betas=(1.0, 0.999)), r"betas\[0\]"),
        ("Adam", dict(betas=(0.9, -0.1)), r"betas\[1\]"),
        ("AdamW", dict(weight_decay=-0.1), "weight_decay"),
        ("Adamax", dict(eps=-1e-8), "eps"),
        ("AveragedMomentumSGD", dict(momentum=1.0), "momentum"),
        ("SutskeverNesterov", dict(lr=-0.1), "lr"),
    ],
)
def test_invalid_hyperparameters_raise_value_error_naming_them(name, kwargs, param):
    with pytest.raises(ValueError, match=param):
        getattr(ck, name)([nn.Parameter(torch.zeros(2))], **kwargs)


def test_loss_falls_on_rosenbrock():
    """Each optimizer makes progress on the classic banana valley from (-1.5, 2)."""
    settings = {
        "SGD": dict(lr=1e-3, momentum=0.9),
        "Rprop": dict(lr=1e-3),
        "Adagrad": dict(lr=0.1),
        "RMSprop": dict(lr=1e-3),
        "Adadelta": dict(lr=1.0),
        "Adam": dict(lr=1e-2),
        "AdamW": dict(lr=1e-2),
        "Adamax": dict(lr=1e-2),
    }

    def rosenbrock(xy):
        return (1 - xy[0]) ** 2 + 100 * (xy[1] - xy[0] ** 2) ** 2

    for name, kwargs in settings.items():
        xy = nn.Parameter(torch.tensor([-1.5, 2.0], dtype=torch.float64))
        opt = getattr(ck, name)([xy], **kwargs)
        start = rosenbrock(xy).item()
        for _ in range(500):
            opt.zero_grad()
            rosenbrock(xy).backward()
            opt.step()
        assert rosenbrock(xy).item() < 0.5 * start, name
