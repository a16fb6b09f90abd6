"""Loss landscapes: small surfaces with known answers, and slices of real networks' losses."""

from .slices import (
    SliceInfo,
    interpolate,
    plane_through,
    random_direction,
    slice_1d,
    slice_2d,
)
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
    "SliceInfo",
    "Surface",
    "all_surfaces",
    "beale",
    "interpolate",
    "one_one_one_net",
    "plane_through",
    "quadratic",
    "random_direction",
    "rosenbrock",
    "saddle",
    "slice_1d",
    "slice_2d",
    "trajectory",
]
