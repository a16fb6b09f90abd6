"""Argument checks shared by the lecture modules: a wrong argument raises ValueError naming it.

One message form everywhere, ``Invalid lr: -0.1 (must be a finite number > 0)``, so a student's
traceback says which argument was wrong and what would be right.
"""

from __future__ import annotations

import math
from numbers import Integral


def _number(name: str, value: object, what: str) -> float:
    """`value` as a float; a one-element tensor or a numpy scalar counts, a bool or text not."""
    if not isinstance(value, bool | str):
        try:
            return float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError, RuntimeError):
            pass
    raise ValueError(f"Invalid {name}: {value!r} (must be {what})")


def positive(name: str, value: object) -> None:
    """A finite number > 0 (a learning rate, a scale, a tolerance that must not vanish)."""
    number = _number(name, value, "a finite number > 0")
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"Invalid {name}: {value!r} (must be a finite number > 0)")


def nonnegative(name: str, value: object) -> None:
    """A finite number >= 0."""
    number = _number(name, value, "a finite number >= 0")
    if not (math.isfinite(number) and number >= 0):
        raise ValueError(f"Invalid {name}: {value!r} (must be a finite number >= 0)")


def count(name: str, value: object, minimum: int = 1) -> None:
    """An int >= `minimum` (steps, samples, layers); bools and floats are refused."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"Invalid {name}: {value!r} (must be an int >= {minimum})")
