"""Time one `StatisticalSGD.step()` against torch's SGD (momentum) and Adam, side by side.

torch has no StatisticalSGD, so the references are the steps a user would otherwise take: SGD
with momentum (the cheapest) and Adam (the usual adaptive one), each in torch's foreach and
fused forms, on the same 13.4M parameters in 100 tensors as `optim_step.py`. StatisticalSGD
keeps three state tensors and makes about fifteen element-wise passes per step (Adam: two
state tensors, about seven); its foreach path runs them over cache-sized chunks of tensors on a
CPU. Interleaved rounds, minimum ms per step; ratios to torch's Adam foreach step.

    python benchmarks/statistical_sgd.py
    python benchmarks/statistical_sgd.py --device cuda
    python benchmarks/statistical_sgd.py --params 1e5 --rounds 3      # a quick smoke run
"""

from __future__ import annotations

import torch

import coursekit.optim as ck

from _common import machine
from optim_step import step_arguments, time_steps

STATISTICAL = dict(batch_size=32, smoothness=1.0, warmup=1)


def variants() -> dict:
    out = {
        "torch SGD foreach": lambda ps: torch.optim.SGD(ps, lr=1e-3, momentum=0.9, foreach=True),
        "torch SGD fused": lambda ps: torch.optim.SGD(ps, lr=1e-3, momentum=0.9, fused=True),
        "torch Adam foreach": lambda ps: torch.optim.Adam(ps, foreach=True),
        "torch Adam fused": lambda ps: torch.optim.Adam(ps, fused=True),
        "StatisticalSGD single": lambda ps: ck.StatisticalSGD(ps, foreach=False, **STATISTICAL),
        "StatisticalSGD foreach": lambda ps: ck.StatisticalSGD(ps, foreach=True, **STATISTICAL),
        "StatisticalSGD fused": lambda ps: ck.StatisticalSGD(ps, fused=True, **STATISTICAL),
    }
    return out


def main() -> None:
    args = step_arguments(__doc__.splitlines()[0]).parse_args()
    ms, _ = time_steps(variants(), args)  # the first steps create state and compile
    n = max(1, int(args.params) // args.tensors) * args.tensors
    print(
        f"machine: {machine(args.device)}; device: {args.device}; {n:,} parameters in "
        f"{args.tensors} tensors; minimum of {args.rounds} steps\n"
    )
    print("| step | ms | / torch Adam foreach |\n|---|---|---|")
    for label, value in ms.items():
        print(f"| {label} | {value:.2f} | {value / ms['torch Adam foreach']:.2f}x |")


if __name__ == "__main__":
    main()
