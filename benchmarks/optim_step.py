"""Time one `optimizer.step()` of coursekit against torch.optim and the memory-bandwidth bound.

For every optimizer, on a model of 13.4M parameters in 100 tensors, six variants: torch's
for-loop, foreach and fused steps (fused where torch has one: SGD, Adagrad, Adam, AdamW),
coursekit's per-tensor, foreach and fused (`fused=True`, compiled by Inductor) steps. Variants
are timed in interleaved rounds, so a slow-down of the machine hits all of them alike; the
table reports the minimum ms per step (the step undisturbed by the other tenants of a shared
machine).

The bound is what the step cannot beat: the bytes it must move (each state tensor, the
parameter and the gradient read once, and each updated tensor written once) divided by the
bandwidth of a copy between two arrays the size of the parameter vector, measured in the same
run. The compile time of coursekit's fused step (its first step, less a later one) is reported
separately; by default Inductor's on-disk cache starts empty, so it is the cost a new machine
pays.

    python benchmarks/optim_step.py                  # CPU, 13.4M parameters
    python benchmarks/optim_step.py --device cuda
    python benchmarks/optim_step.py --params 1e5 --rounds 3 --only Adam   # a quick smoke run
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

if "--warm-cache" not in sys.argv:  # before torch is imported: a cold Inductor cache
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="optim_step_inductor_")

import torch  # noqa: E402

import coursekit.optim as ck  # noqa: E402

from _common import machine, timed  # noqa: E402

OPTIMIZERS = {
    "SGD": dict(lr=1e-3, momentum=0.9),
    "Rprop": dict(),
    "Adagrad": dict(),
    "RMSprop": dict(),
    "Adadelta": dict(),
    "Adam": dict(),
    "AdamW": dict(),
    "Adamax": dict(),
}
TORCH_FUSED = {"SGD", "Adam", "AdamW", "Adagrad"}
# Parameter-sized tensors each step moves: reads (parameter, gradient, state) + writes
# (parameter, state), for the settings above.
TENSORS_MOVED = {
    "SGD": 5,
    "Rprop": 7,
    "Adagrad": 5,
    "RMSprop": 5,
    "Adadelta": 7,
    "Adam": 7,
    "AdamW": 7,
    "Adamax": 7,
}
COLUMNS = [
    "torch loop",
    "torch foreach",
    "torch fused",
    "coursekit single",
    "coursekit foreach",
    "coursekit fused",
]


def make_params(total: int, tensors: int, device: str) -> list[torch.nn.Parameter]:
    """`tensors` parameters of equal size adding up to about `total` numbers, with gradients."""
    gen = torch.Generator().manual_seed(0)
    size = max(1, total // tensors)
    params = []
    for _ in range(tensors):
        p = torch.nn.Parameter(torch.randn(size, generator=gen).to(device))
        p.grad = torch.randn(size, generator=gen).to(device)
        params.append(p)
    return params


def variants(name: str, kwargs: dict) -> dict:
    """Constructors for each variant of one optimizer."""
    torch_cls, ours_cls = getattr(torch.optim, name), getattr(ck, name)
    out = {
        "torch loop": lambda ps: torch_cls(ps, foreach=False, **kwargs),
        "torch foreach": lambda ps: torch_cls(ps, foreach=True, **kwargs),
        "coursekit single": lambda ps: ours_cls(ps, foreach=False, **kwargs),
        "coursekit foreach": lambda ps: ours_cls(ps, foreach=True, **kwargs),
        "coursekit fused": lambda ps: ours_cls(ps, fused=True, **kwargs),
    }
    if name in TORCH_FUSED:
        out["torch fused"] = lambda ps: torch_cls(ps, fused=True, **kwargs)
    return out


def copy_ms(args: argparse.Namespace) -> float:
    """Minimum ms to copy one parameter-sized array into another (one read, one write)."""
    n = max(1, int(args.params) // args.tensors) * args.tensors
    src, dst = torch.randn(n, device=args.device), torch.empty(n, device=args.device)
    return 1e3 * min(timed(lambda: dst.copy_(src), args.device)[0] for _ in range(3 * args.rounds))


def time_steps(makers: dict, args: argparse.Namespace) -> tuple[dict[str, float], dict]:
    """Minimum ms per step of each optimizer ``makers[label](params)``, stepped in interleaved
    rounds after `args.warmup` first steps, and those first steps' seconds by label."""
    runs, first = {}, {}
    for label, make in makers.items():
        opt = make(make_params(int(args.params), args.tensors, args.device))
        first[label] = [timed(opt.step, args.device)[0] for _ in range(args.warmup)]
        runs[label] = (opt, [])
    for _ in range(args.rounds):
        for opt, times in runs.values():
            times.append(timed(opt.step, args.device)[0])
    return {label: 1e3 * min(times) for label, (_, times) in runs.items()}, first


def bench(name: str, args: argparse.Namespace) -> tuple[dict[str, float], float]:
    """Minimum ms per step of each variant, and the seconds coursekit's fused step compiled."""
    ms, first = time_steps(variants(name, OPTIMIZERS[name]), args)
    fused = first["coursekit fused"]  # SGD with momentum compiles at its second step
    return ms, max(fused) - min(fused)


def step_arguments(description: str) -> argparse.ArgumentParser:
    """The arguments every step benchmark takes: device, problem size, rounds."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--params", type=float, default=13.4e6, help="total parameter count")
    parser.add_argument("--tensors", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    return parser


def main() -> None:
    parser = step_arguments(__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=list(OPTIMIZERS))
    parser.add_argument(
        "--warm-cache",
        action="store_true",
        help="keep Inductor's on-disk cache (compile times then understate)",
    )
    args = parser.parse_args()

    copy = copy_ms(args)
    n = max(1, int(args.params) // args.tensors) * args.tensors
    print(
        f"machine: {machine(args.device)}; device: {args.device}; "
        f"{n:,} parameters in {args.tensors} tensors; minimum of {args.rounds} steps (ms); "
        f"copy of {n:,} floats {copy:.2f} ms = {8 * n / copy / 1e6:.1f} GB/s\n"
    )
    print(
        "| optimizer | " + " | ".join(COLUMNS) + " | bound | fused / bound "
        "| fused / torch fused | compile (s) | break-even (steps) |"
    )
    print("|---" * (len(COLUMNS) + 6) + "|")
    for name in args.only:
        ms, compile_s = bench(name, args)
        bound = TENSORS_MOVED[name] / 2 * copy
        cells = [f"{ms[c]:.2f}" if c in ms else "-" for c in COLUMNS]
        fused = ms["coursekit fused"]
        vs_torch = f"{fused / ms['torch fused']:.2f}x" if "torch fused" in ms else "-"
        saving = ms["coursekit foreach"] - fused
        even = f"{1e3 * compile_s / saving:.0f}" if saving > 0 else "never"
        print(
            f"| {name} | " + " | ".join(cells) + f" | {bound:.2f} | {fused / bound:.2f}x | "
            f"{vs_torch} | {compile_s:.1f} | {even} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
