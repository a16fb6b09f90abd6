"""Time a Hessian-free step against an Adam step on the same model and batch, side by side.

A step of torch.optim.Adam costs one forward and one backward pass. A `HessianFree` step costs
one gradient with its graph kept, one Hessian-vector product per CG iteration (a backward pass
through the gradient's graph) plus one for the residual of CG's warm start, and one forward pass
to check the step (the model's predicted reduction comes from CG's residual): its price in Adam
steps is about 1 + (CG iterations + 1) x (the price of a product). The table gives the measured ms per step, the ratio to Adam's step, and
the CG iterations and products counted by the optimizer; the last line times one product
against one gradient on their own. Natural gradient steps (dense exact Fisher) on a logistic
regression of the same data are timed against Adam on that model.

Models: a tanh MLP 64-64-10 (4,810 parameters) and `SmallCNN` (1,898) on scikit-learn's digits,
full batch (1,347 images). Interleaved rounds, minimum ms per step.

    python benchmarks/second_order.py
    python benchmarks/second_order.py --device cuda
    python benchmarks/second_order.py --rounds 3      # a quick smoke run
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from coursekit.curvature import loss_hvp
from coursekit.data import digits
from coursekit.models import MLP, SmallCNN
from coursekit.second_order import HessianFree, NaturalGradient

from _common import machine, timed


def _adam(model, x, y):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return step, None


def _hessian_free(cg_max_iter):
    def make(model, x, y):
        # cg_tol=0: every step spends its whole CG budget, so the rows compare budgets.
        opt = HessianFree(model.parameters(), damping=1.0, cg_max_iter=cg_max_iter, cg_tol=0.0)
        return (lambda: opt.step(lambda: F.cross_entropy(model(x), y))), opt

    return make


def _natural_gradient(model, x, y):
    opt = NaturalGradient(model, lr=0.5, damping=1e-3)
    return (lambda: opt.step(x, y)), None


def _product_and_gradient(model, x, y, rounds, device):
    """Minimum seconds of one Hessian-vector product and of one gradient on their own."""
    params = list(model.parameters())
    v = torch.randn(sum(p.numel() for p in params), device=device)
    _, hvp = loss_hvp(F.cross_entropy(model(x), y), params)
    product = min(timed(lambda: hvp(v), device)[0] for _ in range(rounds))
    gradient = min(
        timed(lambda: torch.autograd.grad(F.cross_entropy(model(x), y), params), device)[0]
        for _ in range(rounds)
    )
    return product, gradient


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    data = digits()
    x, y = data.x_train.to(args.device), data.y_train.to(args.device)
    print(f"machine: {machine(args.device)}; device: {args.device}; {len(x):,} digits, full batch;")
    print(f"minimum of {args.rounds} interleaved rounds\n")
    print("| model | step | ms | / Adam step | CG iterations per step | HVPs per step |")
    print("|---|---|---:|---:|---:|---:|")
    models = {
        "MLP 64-64-10 tanh": lambda: MLP([64, 64, 10], "tanh"),
        "SmallCNN (8, 16)": lambda: SmallCNN(),
        "logistic regression": lambda: torch.nn.Linear(64, 10),
    }
    for name, build in models.items():
        variants = {"Adam": _adam}
        if name == "logistic regression":
            variants["NaturalGradient (exact Fisher)"] = _natural_gradient
        else:
            for budget in (5, 10, 20, 50):
                variants[f"HessianFree, CG budget {budget}"] = _hessian_free(budget)
        torch.manual_seed(0)
        steps = {label: make(build().to(args.device), x, y) for label, make in variants.items()}
        best = dict.fromkeys(steps, float("inf"))
        for step, _ in steps.values():
            step()  # warm-up: state, allocator
        for _ in range(args.rounds):
            for label, (step, _) in steps.items():
                best[label] = min(best[label], timed(step, args.device)[0])
        for label, (_, opt) in steps.items():
            ms = 1e3 * best[label]
            ratio = best[label] / best["Adam"]
            if opt is None:
                print(f"| {name} | {label} | {ms:.2f} | {ratio:.2f}x | | |")
            else:
                n = args.rounds + 1
                print(
                    f"| {name} | {label} | {ms:.2f} | {ratio:.2f}x | "
                    f"{opt.last_cg.iterations} | {opt.hvp_evaluations / n:.1f} |"
                )
        if name != "logistic regression":
            torch.manual_seed(0)
            product, gradient = _product_and_gradient(
                build().to(args.device), x, y, args.rounds, args.device
            )
            print(
                f"| {name} | one HVP / one gradient | {1e3 * product:.2f} / {1e3 * gradient:.2f} "
                f"| {product / gradient:.2f}x | | |"
            )


if __name__ == "__main__":
    main()
