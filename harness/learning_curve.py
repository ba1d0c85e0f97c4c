"""How many labeled issues a method needs to reach a target F1, from its learning curve.

The curve is the inverse power law F1(n) = a - b * n^(-c) (a: the plateau, b, c > 0), fitted
by least squares to the mean F1 over seeds at each measured slice (n = mean actual training
size). It rises and flattens as learning curves do, so it can say "not reached" when the
plateau is below the target, which a line in log n cannot; with five or six slices its
extrapolations are rough, and they are marked as such.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np

Reach = Literal["interpolated", "below smallest slice", "extrapolated", "far beyond", "not reached", "label-free", "no fit"]
MIN_POINTS = 3  # three parameters
# beyond this many times the largest slice a fitted size is no estimate: a nearly flat curve puts
# it anywhere up to 1e13, and its digits change with the CPU's floating-point round-off
FARTHEST_EXTRAPOLATION = 100


@dataclass(frozen=True)
class Curve:
    plateau: float  # a
    scale: float  # b
    exponent: float  # c

    def __call__(self, n: np.ndarray | float) -> np.ndarray | float:
        return self.plateau - self.scale * np.power(n, -self.exponent)

    def n_for(self, target: float) -> float | None:
        """The training size at which the curve reaches ``target``; None when it never does."""
        if target >= self.plateau:
            return None
        if self.scale <= 0:
            return 0.0
        return float((self.scale / (self.plateau - target)) ** (1.0 / self.exponent))


@dataclass(frozen=True)
class LabelsNeeded:
    n: float | None
    reach: Reach
    curve: Curve | None = None
    smallest_n: float | None = None
    largest_n: float | None = None


def fit_curve(n: np.ndarray, f1: np.ndarray) -> Curve | None:
    """The inverse power law through (n, f1), or None with fewer than three distinct sizes or
    when the fit does not converge."""
    from scipy.optimize import curve_fit

    n, f1 = np.asarray(n, dtype=float), np.asarray(f1, dtype=float)
    keep = (n > 0) & np.isfinite(f1)
    n, f1 = n[keep], f1[keep]
    if len(np.unique(n)) < MIN_POINTS:
        return None
    start = (min(1.0, f1.max() + 0.05), max(f1.max() - f1.min(), 0.01) * n.min() ** 0.5, 0.5)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an ill-conditioned covariance is no reason to refuse the fit
            params, _ = curve_fit(lambda x, a, b, c: a - b * np.power(x, -c), n, f1, p0=start,
                                  bounds=([0.0, 0.0, 0.01], [1.0, np.inf, 3.0]), maxfev=20000)
    except (RuntimeError, ValueError):
        return None
    return Curve(*map(float, params))


def labels_needed(n: np.ndarray, f1: np.ndarray, target: float) -> LabelsNeeded:
    """The estimated training size to reach ``target`` from the measured (n, mean F1) points."""
    curve = fit_curve(n, f1)
    if curve is None:
        return LabelsNeeded(None, "no fit")
    largest, smallest = float(np.max(n)), float(np.min(n))
    needed = curve.n_for(target)
    if needed is None:
        return LabelsNeeded(None, "not reached", curve, smallest, largest)
    if needed > FARTHEST_EXTRAPOLATION * largest:
        return LabelsNeeded(None, "far beyond", curve, smallest, largest)
    if needed > largest:
        reach: Reach = "extrapolated"
    elif needed < smallest:
        reach = "below smallest slice"
    else:
        reach = "interpolated"
    return LabelsNeeded(needed, reach, curve, smallest, largest)
