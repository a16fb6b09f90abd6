"""Loss landscapes: small surfaces with known answers to watch optimizers on."""

from .surfaces import (
    Surface,
    all_surfaces,
    beale,
    one_one_one_net,
    quadratic,
    rosenbrock,
    saddle,
    trajectory,
)

__all__ = [
    "Surface",
    "all_surfaces",
    "beale",
    "one_one_one_net",
    "quadratic",
    "rosenbrock",
    "saddle",
    "trajectory",
]
