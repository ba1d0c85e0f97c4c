"""Seeding every generator a fit may draw from, as every cell (and every selector fit of a
trajectory) is seeded before ``fit``."""

from __future__ import annotations

import random
import sys

import numpy as np


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and (when a method already imported it) torch's generators."""
    random.seed(seed)
    np.random.seed(seed)
    if "torch" in sys.modules:  # importing torch here would slow every cell that does not use it
        sys.modules["torch"].manual_seed(seed)
