"""What the kernel tests share: one-entity and whole panels, the bitwise comparison that
also holds the kernel contract (float64, no inf), and the no-warnings rule."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

N = np.nan


@pytest.fixture(autouse=True)
def _no_warnings():
    # Kernels must silence numpy themselves (overflow, 0/0, log(0)...).
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def col(*values: float) -> np.ndarray:
    """A one-entity panel, oldest period first."""
    return np.array(values, dtype=float).reshape(-1, 1)


def panel(rows) -> np.ndarray:
    return np.array(rows, dtype=float)


def same(actual, expected) -> None:
    """Bitwise equality, NaN == NaN, and the kernel contract: float64, no inf."""
    actual = np.asarray(actual)
    assert actual.dtype == np.float64
    assert not np.isinf(actual).any()
    expected = np.asarray(expected, dtype=float)
    np.testing.assert_array_equal(actual, expected.reshape(actual.shape))
