"""Time one `optimizer.step()` of coursekit against torch.optim, side by side in one process.

For every optimizer, on a model of about 10M parameters in 100 tensors, four variants:
torch's for-loop and foreach paths, coursekit's single-tensor and foreach paths (plus torch's
fused step where torch has one, on CUDA). Variants are timed in interleaved rounds, so a
slow-down of the machine hits all of them alike; the table reports the median ms per step and
the ratio of coursekit's fast path to torch's foreach path.

    python benchmarks/optim_step.py                  # CPU, the full 10M-parameter model
    python benchmarks/optim_step.py --device cuda
    python benchmarks/optim_step.py --params 1e5 --rounds 3   # a quick smoke run
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

import coursekit.optim as ck

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


def variants(name: str, kwargs: dict, device: str) -> dict:
    """Constructors for each variant of one optimizer."""
    torch_cls, ours_cls = getattr(torch.optim, name), getattr(ck, name)
    out = {
        "torch loop": lambda ps: torch_cls(ps, foreach=False, **kwargs),
        "torch foreach": lambda ps: torch_cls(ps, foreach=True, **kwargs),
        "coursekit single": lambda ps: ours_cls(ps, foreach=False, **kwargs),
        "coursekit foreach": lambda ps: ours_cls(ps, foreach=True, **kwargs),
    }
    if device != "cpu" and name in TORCH_FUSED:
        out["torch fused"] = lambda ps: torch_cls(ps, fused=True, **kwargs)
    return out


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench(name: str, args: argparse.Namespace) -> dict[str, float]:
    """Median milliseconds per step of each variant."""
    runs = {}
    for label, make in variants(name, OPTIMIZERS[name], args.device).items():
        params = make_params(int(args.params), args.tensors, args.device)
        opt = make(params)
        for _ in range(args.warmup):  # creates the state, warms caches and allocators
            opt.step()
        runs[label] = (opt, [])
    sync(args.device)
    for _ in range(args.rounds):
        for opt, times in runs.values():
            start = time.perf_counter()
            opt.step()
            sync(args.device)
            times.append(time.perf_counter() - start)
    return {label: 1e3 * statistics.median(times) for label, (_, times) in runs.items()}


def machine(device: str) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    text = f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    if device.startswith("cuda"):
        text += f", {torch.cuda.get_device_name()}"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--params", type=float, default=10e6, help="total parameter count")
    parser.add_argument("--tensors", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--only", nargs="*", default=list(OPTIMIZERS))
    args = parser.parse_args()

    print(f"machine: {machine(args.device)}; device: {args.device}; "
          f"{int(args.params):,} parameters in {args.tensors} tensors; "
          f"median of {args.rounds} steps (ms)\n")
    cols = ["torch loop", "torch foreach", "coursekit single", "coursekit foreach"]
    if args.device != "cpu":
        cols.append("torch fused")
    print("| optimizer | " + " | ".join(cols) + " | coursekit foreach / torch foreach |")
    print("|---" * (len(cols) + 2) + "|")
    for name in args.only:
        ms = bench(name, args)
        cells = [f"{ms[c]:.2f}" if c in ms else "-" for c in cols]
        ratio = ms["coursekit foreach"] / ms["torch foreach"]
        print(f"| {name} | " + " | ".join(cells) + f" | {ratio:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
