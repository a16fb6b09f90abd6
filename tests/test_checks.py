"""The shared argument checks: what they accept, what they refuse, and how they say so."""

import math

import numpy as np
import pytest
import torch

from coursekit import _checks


@pytest.mark.parametrize("value", [1, 0.5, np.float64(2.0), torch.tensor(3.0)])
def test_positive_accepts_finite_positive_numbers_of_any_kind(value):
    _checks.positive("lr", value)
    _checks.nonnegative("lr", value)


@pytest.mark.parametrize(
    "value", [0, -1.0, math.inf, math.nan, True, "1", torch.ones(2), None, [1.0]]
)
def test_positive_refuses_the_rest_naming_the_argument(value):
    with pytest.raises(ValueError, match=r"^Invalid lr: .* \(must be a finite number > 0\)$"):
        _checks.positive("lr", value)


def test_nonnegative_takes_zero_and_refuses_negatives_and_infinity():
    _checks.nonnegative("alpha", 0.0)
    for value in (-1e-12, math.inf, math.nan, False):
        with pytest.raises(ValueError, match="Invalid alpha"):
            _checks.nonnegative("alpha", value)


def test_count_wants_an_int_at_least_the_minimum():
    _checks.count("steps", 0, 0)
    _checks.count("steps", np.int64(3))
    for value, minimum in ((0, 1), (2.0, 1), (True, 0), (-1, 0), ("3", 0)):
        with pytest.raises(ValueError, match=rf"Invalid steps: .* \(must be an int >= {minimum}\)"):
            _checks.count("steps", value, minimum)
