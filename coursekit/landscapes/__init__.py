"""Loss landscapes: small surfaces with known answers, slices of real networks' losses, their
critical points, and the minima that nets of different widths reach."""

from .critical import (
    FoundPoint,
    KnownCriticalPoint,
    LinearMapTask,
    deep_linear_critical_points,
    linear_map_task,
    search_critical_points,
)
from .slices import (
    SliceInfo,
    SliceOptions,
    interpolate,
    plane_through,
    random_direction,
    slice_1d,
    slice_2d,
)
from .surfaces import (
    Quadratic,
    Surface,
    all_surfaces,
    beale,
    one_one_one_net,
    quadratic,
    rosenbrock,
    saddle,
    trajectory,
)
from .widths import WidthRun, minima_by_width

__all__ = [
    "FoundPoint",
    "KnownCriticalPoint",
    "LinearMapTask",
    "Quadratic",
    "SliceInfo",
    "SliceOptions",
    "Surface",
    "WidthRun",
    "all_surfaces",
    "beale",
    "deep_linear_critical_points",
    "interpolate",
    "linear_map_task",
    "minima_by_width",
    "one_one_one_net",
    "plane_through",
    "quadratic",
    "random_direction",
    "rosenbrock",
    "saddle",
    "search_critical_points",
    "slice_1d",
    "slice_2d",
    "trajectory",
]
