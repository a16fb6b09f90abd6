"""Top Hessian eigenvalues of a 100k-parameter MLP: Lanczos (ARPACK) against power iteration.

The network, 64-400-180-10 with tanh (99,990 parameters), is first trained for a few hundred
full-batch Adam steps on scikit-learn's digits (seeded), so that its Hessian has the outliers
above a bulk near zero that trained networks show. Then, in one process, the top k eigenpairs
of the training-loss Hessian come from `coursekit.curvature.top_eigenvalues` with
``method="lanczos"`` and with ``method="power"``, at the same tolerance. Reported: wall time,
number of Hessian-vector products, and accuracy: the relative residual
``||H q - lambda q|| / |lambda|`` of every eigenpair, recomputed with `curvature.hvp`, and the
agreement of the two methods' eigenvalues.

With ``--products``, it times instead one Hessian-vector product computed three ways that give
the same vector: coursekit's operator, which builds the gradient's graph once and keeps it (one
backward pass per product); `curvature.hvp`, which builds it afresh for every product; and
forward-over-reverse, ``torch.func.jvp`` of ``torch.func.grad``.

    python benchmarks/curvature.py                  # CPU, float64, top 5
    python benchmarks/curvature.py --device cuda
    python benchmarks/curvature.py --smoke --threads 1   # a small net, a quick run
    python benchmarks/curvature.py --products --threads 1 --dtype float32
"""

from __future__ import annotations

import argparse
import statistics

import torch
from torch import nn

from coursekit import curvature
from coursekit.data import digits

from _common import machine, timed


def trained_mlp(args: argparse.Namespace):
    """The MLP after `args.train_steps` full-batch Adam steps, and its training-loss closure."""
    data = digits(dtype=args.dtype)
    x, y = data.x_train.to(args.device), data.y_train.to(args.device)
    torch.manual_seed(args.seed)
    sizes = [x.shape[1], *args.hidden, 10]
    layers: list[nn.Module] = []
    for d_in, d_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(d_in, d_out), nn.Tanh()]
    model = nn.Sequential(*layers[:-1]).to(device=args.device, dtype=args.dtype)

    def loss_fn(m: nn.Module) -> torch.Tensor:
        return nn.functional.cross_entropy(m(x), y)

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(args.train_steps):
        optimizer.zero_grad()
        loss_fn(model).backward()
        optimizer.step()
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        accuracy = (model(x).argmax(1) == y).double().mean().item()
    return model, loss_fn, loss_fn(model).item(), accuracy


def run(method: str, model: nn.Module, loss_fn, args: argparse.Namespace) -> dict:
    """Eigenpairs, seconds and the number of Hessian-vector products of one method."""
    products = [0]
    # Every product ends in one gradient with respect to all parameters; count them on the first.
    hook = next(model.parameters()).register_hook(
        lambda g: products.__setitem__(0, products[0] + 1)
    )
    seconds, (values, vectors) = timed(
        lambda: curvature.top_eigenvalues(
            model,
            loss_fn,
            k=args.k,
            method=method,
            tol=args.tol,
            max_iter=args.max_iter if method == "power" else None,
            generator=torch.Generator().manual_seed(args.seed),
        ),
        args.device,
    )
    hook.remove()
    residuals = [
        ((curvature.hvp(model, loss_fn, q) - lam * q).norm() / lam.abs()).item()
        for lam, q in zip(values, vectors.T)
    ]
    # The first of the counted gradients is the gradient itself, not a product.
    return dict(
        values=values.tolist(), seconds=seconds, products=products[0] - 1, residuals=residuals
    )


class _Loss(nn.Module):
    """``loss_fn(model)`` as a module, so that `torch.func.functional_call` can swap parameters."""

    def __init__(self, model: nn.Module, loss_fn) -> None:
        super().__init__()
        self.model, self.loss_fn = model, loss_fn

    def forward(self) -> torch.Tensor:
        return self.loss_fn(self.model)


def product_ms(model: nn.Module, loss_fn, args: argparse.Namespace, rounds: int = 10) -> dict:
    """Median ms of one Hessian-vector product, three ways, timed in interleaved rounds."""
    params = {f"model.{name}": p.detach() for name, p in model.named_parameters()}
    gen = torch.Generator().manual_seed(args.seed)
    n = sum(p.numel() for p in params.values())
    v = torch.randn(n, generator=gen, dtype=args.dtype).to(args.device)
    pieces = v.split([p.numel() for p in params.values()])
    tangent = {name: t.view_as(p) for (name, p), t in zip(params.items(), pieces)}
    kept, _ = curvature._hvp_operator(model, loss_fn)  # what top_eigenvalues and index use
    grad = torch.func.grad(lambda p: torch.func.functional_call(_Loss(model, loss_fn), p, ()))
    ways = {
        "graph kept (coursekit's operator)": lambda: kept(v),
        "graph rebuilt per product (curvature.hvp)": lambda: curvature.hvp(model, loss_fn, v),
        "forward-over-reverse (torch.func.jvp of grad)": lambda: torch.cat(
            [t.flatten() for t in torch.func.jvp(grad, (params,), (tangent,))[1].values()]
        ),
    }
    reference = kept(v)
    for way in ways.values():  # warm-up, and a check that all three give the same vector
        torch.testing.assert_close(way(), reference, rtol=1e-4, atol=1e-6)
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(rounds):
        for name, way in ways.items():
            times[name].append(timed(way, args.device)[0])
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    parser.add_argument(
        "--hidden", type=int, nargs="+", default=[400, 180], help="hidden layer widths"
    )
    parser.add_argument("--train-steps", type=int, default=300, help="Adam steps before")
    parser.add_argument("--k", type=int, default=5, help="number of eigenpairs")
    parser.add_argument("--tol", type=float, default=1e-6, help="passed to both methods")
    parser.add_argument(
        "--max-iter", type=int, default=3000, help="power iteration: products per eigenpair at most"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads of torch and of scipy's BLAS (default: each library's own)",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a 64-32-10 net, 50 training steps, top 3 at tol 1e-4: a quick check",
    )
    parser.add_argument(
        "--products", action="store_true", help="time one Hessian-vector product three ways"
    )
    args = parser.parse_args()
    if args.smoke:
        args.hidden, args.train_steps, args.k, args.tol = [32], 50, 3, 1e-4
    args.dtype = getattr(torch, args.dtype)
    if args.threads is not None:
        # torch's pool and scipy's OpenBLAS pool (used by ARPACK) each default to every core.
        # On a small machine the idle threads of one spin while the other works: with 2 cores,
        # capping both at 1 made a product 2x faster inside eigsh.
        from threadpoolctl import threadpool_limits  # installed with scikit-learn

        threadpool_limits(args.threads)
        torch.set_num_threads(args.threads)

    model, loss_fn, loss, accuracy = trained_mlp(args)
    n = sum(p.numel() for p in model.parameters())
    sizes = "-".join(str(s) for s in [64, *args.hidden, 10])
    print(f"machine: {machine(args.device)}; device: {args.device}; {args.dtype}")
    print(
        f"model: MLP {sizes} (tanh), {n:,} parameters, {args.train_steps} Adam steps: "
        f"training loss {loss:.4f}, accuracy {accuracy:.3f}"
    )
    if args.products:
        print("\n| Hessian-vector product | ms (median of 10) |\n|---|---|")
        for name, ms in product_ms(model, loss_fn, args).items():
            print(f"| {name} | {ms:.1f} |")
        return
    print(f"top {args.k} eigenvalues of the training-loss Hessian, tol {args.tol:g}\n")

    # Warm-up: the first product pays for allocations that neither method should be charged.
    curvature.hvp(model, loss_fn, torch.ones(n, device=args.device, dtype=args.dtype))
    results = {method: run(method, model, loss_fn, args) for method in ("lanczos", "power")}

    print("| method | seconds | Hessian-vector products | ms per product | max relative residual |")
    print("|---|---|---|---|---|")
    for method, r in results.items():
        print(
            f"| {method} | {r['seconds']:.1f} | {r['products']} "
            f"| {1e3 * r['seconds'] / max(r['products'], 1):.1f} "
            f"| {max(r['residuals']):.1e} |"
        )
    print()
    lanczos, power = results["lanczos"], results["power"]
    print(
        "| i | eigenvalue (lanczos) | eigenvalue (power) | relative difference "
        "| residual (lanczos) | residual (power) |"
    )
    print("|---|---|---|---|---|---|")
    for i in range(args.k):
        a, b = lanczos["values"][i], power["values"][i]
        print(
            f"| {i + 1} | {a:.8g} | {b:.8g} | {abs(a - b) / abs(a):.1e} "
            f"| {lanczos['residuals'][i]:.1e} | {power['residuals'][i]:.1e} |"
        )


if __name__ == "__main__":
    main()
