"""A method that draws a tqdm bar in ``fit``, from a module that imports tqdm when it loads.

tqdm reads ``TQDM_DISABLE`` when it is imported; pooch, which reads dataset files, imports it
too. Loaded as a plugin module through ``HARNESS_PLUGINS=tqdm_methods`` (this folder on PYTHONPATH).
"""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from harness import hookimpl
from harness.methods import Method


class TqdmBar(Method):
    """Shows a progress bar while it fits, as library code loading a model does; predicts no tag."""

    name = "tqdm_bar"

    def fit(self, train, valid, unlabeled, context):
        for _ in tqdm(range(3), desc="a library's bar"):
            pass
        self.n_tags = len(context.tags)

    def predict(self, texts):
        return np.zeros((len(texts), self.n_tags), dtype=np.uint8)


@hookimpl
def register_methods(register):
    register(TqdmBar)
