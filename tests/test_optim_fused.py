"""Is `fused=True` the same optimizer, compiled once?

The fused path is the per-tensor update compiled by Inductor (`coursekit/optim/_fused.py`), so
it must give torch.optim's numbers (the tolerances of `test_optim_reference.py`), resume from a
state_dict, honour param groups, follow a scheduler without compiling again, and fall back with
a warning where nothing can be compiled. Compilation dominates this file's time, so the model
is tiny and its two param groups have the same shapes: one compiled step serves both groups,
every step and every later test with the same signature.
"""

from __future__ import annotations

import copy

import pytest
import torch
from test_optim_reference import tolerance  # the same tolerances as the torch comparison
from torch import nn
from torch._dynamo.utils import counters

import coursekit.optim as ck
from coursekit.optim import _fused

# One demanding configuration per optimizer (every branch of the update that has one).
CASES = [
    ("SGD", dict(lr=0.05)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("Rprop", dict(lr=0.003, etas=(0.3, 1.5), step_sizes=(1e-4, 0.1), maximize=True)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01, weight_decay=0.01, initial_accumulator_value=0.1)),
    ("RMSprop", dict(lr=0.01, centered=True, momentum=0.9, weight_decay=0.01)),
    ("Adadelta", dict(lr=0.5, rho=0.8, eps=1e-5, weight_decay=0.01, maximize=True)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), amsgrad=True, weight_decay=0.01)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1, maximize=True)),
    ("Adamax", dict(lr=0.01, betas=(0.5, 0.9), weight_decay=0.01)),
]
IDS = [f"{name}-{i}" for i, (name, _) in enumerate(CASES)]
STEPS = 12


class Net(nn.Module):
    """Two equal layers (so both param groups share one compiled step) and an unused weight."""

    def __init__(self) -> None:
        super().__init__()
        self.first, self.second = nn.Linear(4, 4), nn.Linear(4, 4)
        self.unused = nn.Parameter(torch.ones(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(torch.tanh(self.first(x)))


def make_model(dtype: torch.dtype, seed: int = 0) -> Net:
    torch.manual_seed(seed)
    return Net().to(dtype)


def groups(model: Net) -> list[dict]:
    return [
        {"params": list(model.first.parameters()) + [model.unused]},
        {"params": model.second.parameters(), "lr": 0.002},
    ]


def train(model: Net, opt, steps: range, scheduler=None) -> list[list[torch.Tensor]]:
    dtype = model.unused.dtype
    history = []
    for k in steps:
        g = torch.Generator().manual_seed(1000 + k)
        x = torch.randn(8, 4, generator=g, dtype=dtype)
        y = torch.randn(8, 4, generator=g, dtype=dtype)
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()
        history.append([p.detach().clone() for p in model.parameters()])
    return history


def assert_same(a: list, b: list, **tol) -> None:
    assert len(a) == len(b) > 0
    for step, (pa, pb) in enumerate(zip(a, b)):
        for x, y in zip(pa, pb):
            torch.testing.assert_close(x, y, **tol, msg=lambda m, step=step: f"step {step}: {m}")


def compiles() -> int:
    return counters["stats"]["unique_graphs"]


def test_this_machine_can_compile():
    """Otherwise every test below would only exercise the fallback."""
    assert _fused.compiler_available(torch.device("cpu")) is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_fused_matches_torch_step_for_step(name, kwargs, dtype):
    ref_model, our_model = make_model(dtype), make_model(dtype)
    ref = getattr(torch.optim, name)(groups(ref_model), foreach=False, **kwargs)
    ours = getattr(ck, name)(groups(our_model), fused=True, **kwargs)
    before = compiles()
    assert_same(
        train(our_model, ours, range(STEPS)),
        train(ref_model, ref, range(STEPS)),
        **tolerance(dtype),
    )
    # One compile serves both groups and every step (this test is the first to use the
    # signature; zero would mean the fused path silently ran uncompiled).
    assert compiles() - before == 1
    assert torch.equal(our_model.unused, torch.ones(3, dtype=dtype))


@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_state_dict_resume_into_a_fresh_fused_optimizer(name, kwargs):
    """The continuation is bit-identical, and the fresh optimizer reuses the compiled step."""
    dtype = torch.float32
    straight = make_model(dtype)
    full = train(straight, getattr(ck, name)(groups(straight), fused=True, **kwargs), range(8))

    first = make_model(dtype)
    opt1 = getattr(ck, name)(groups(first), fused=True, **kwargs)
    train(first, opt1, range(4))
    resumed = make_model(dtype, seed=123)
    resumed.load_state_dict(copy.deepcopy(first.state_dict()))
    opt2 = getattr(ck, name)(groups(resumed), fused=True, **kwargs)
    opt2.load_state_dict(copy.deepcopy(opt1.state_dict()))
    before = compiles()
    rest = train(resumed, opt2, range(4, 8))
    assert compiles() == before
    assert_same(rest, full[4:], rtol=0, atol=0)


@pytest.mark.parametrize(
    "name,kwargs", [CASES[1], CASES[4], CASES[6]], ids=["SGD", "RMSprop", "Adam"]
)
def test_scheduler_changes_lr_without_recompiling(name, kwargs):
    dtype = torch.float32
    ref_model, our_model = make_model(dtype), make_model(dtype)
    ref = getattr(torch.optim, name)(ref_model.parameters(), foreach=False, **kwargs)
    ours = getattr(ck, name)(our_model.parameters(), fused=True, **kwargs)

    def schedule(opt):
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1.0 / (1 + 0.3 * k))

    ref_scheduler, our_scheduler = schedule(ref), schedule(ours)
    expected = train(ref_model, ref, range(2), ref_scheduler)
    got = train(our_model, ours, range(2), our_scheduler)  # SGD compiles at its second step
    before = compiles()
    got += train(our_model, ours, range(2, STEPS), our_scheduler)
    expected += train(ref_model, ref, range(2, STEPS), ref_scheduler)
    assert compiles() == before, "a learning-rate change recompiled the fused step"
    assert_same(got, expected, **tolerance(dtype))


def test_falls_back_with_a_warning_when_nothing_can_compile(monkeypatch):
    monkeypatch.setattr(_fused, "compiler_available", lambda device: "no C++ compiler found")
    dtype = torch.float64
    ref_model, our_model = make_model(dtype), make_model(dtype)
    ref = torch.optim.Adam(groups(ref_model), foreach=False)
    ours = ck.Adam(groups(our_model), fused=True)
    before = compiles()
    with pytest.warns(UserWarning, match=r"fused=True: no C\+\+ compiler found"):
        got = train(our_model, ours, range(3))
    assert compiles() == before
    assert_same(got, train(ref_model, ref, range(3)), **tolerance(dtype))


@pytest.mark.parametrize(
    "name", ["SGD", "Rprop", "Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW", "Adamax"]
)
def test_fused_with_foreach_is_rejected(name):
    # torch.optim raises RuntimeError for the same conflict; coursekit's argument errors are
    # ValueErrors that name the argument.
    with pytest.raises(ValueError, match="fused=True and foreach=True"):
        getattr(ck, name)([nn.Parameter(torch.zeros(2))], fused=True, foreach=True)


def test_falls_back_with_a_warning_past_the_recompile_limit():
    """A process that has compiled the loop for too many signatures still steps correctly."""
    # torch's own patcher: a monkeypatch restores the setting as a plain attribute, which the
    # config module then hides from Dynamo for every later test in the process.
    with torch._dynamo.config.patch(recompile_limit=1):
        model = make_model(torch.float32)
        train(model, ck.Adamax(groups(model), fused=True), range(1))  # at most one compile
        odd = nn.Parameter(torch.ones(5, dtype=torch.float64))  # a signature never compiled
        ref = nn.Parameter(torch.ones(5, dtype=torch.float64))
        opt, ref_opt = ck.Adamax([odd], fused=True), torch.optim.Adamax([ref])
        for p in (odd, ref):
            p.grad = torch.linspace(-1, 1, 5, dtype=torch.float64)
        with pytest.warns(UserWarning, match="fused=True: compilation failed"):
            opt.step()
        ref_opt.step()
    torch.testing.assert_close(odd, ref, **tolerance(torch.float64))
