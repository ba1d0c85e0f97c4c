"""A method that sets up torch as the fine-tuning methods do and reports its thread count.

Loaded as a plugin module through ``HARNESS_PLUGINS=torch_threads_methods`` (with this folder on
PYTHONPATH), so that the worker processes of ``harness run --jobs N`` see it too.
"""

from __future__ import annotations

import os

import numpy as np

from harness import hookimpl
from harness.methods import Method

PLUGIN_MODULE = "torch_threads_methods"


class TorchThreads(Method):
    """Runs the fine-tuning plugins' torch set-up in ``fit``; predicts no tag."""

    name = "torch_threads"

    def fit(self, train, valid, unlabeled, context):
        self.wait_policy = os.environ.get("OMP_WAIT_POLICY")  # as torch's OpenMP runtime will read it
        import torch

        from harness_finetune.runtime import prepare_torch

        prepare_torch(context.seed)
        self.threads = torch.get_num_threads()
        self.n_tags = len(context.tags)

    def predict(self, texts):
        return np.zeros((len(texts), self.n_tags), dtype=np.uint8)

    def details(self):
        return {"torch_threads": self.threads, "omp_wait_policy": self.wait_policy, "pid": os.getpid()}


@hookimpl
def register_methods(register):
    register(TorchThreads)
