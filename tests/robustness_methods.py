"""Methods that misbehave on purpose, for the executor and robustness tests.

Loaded as a plugin module through ``HARNESS_PLUGINS=robustness_methods`` (with this folder on
PYTHONPATH), so that worker processes, Dask workers and ``harness run`` subprocesses see them.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from harness import hookimpl
from harness.methods import Method, MethodParams

PLUGIN_MODULE = "robustness_methods"


class SleepyParams(MethodParams):
    seconds: float = 0.3
    log: str = ""  # a file each fit appends "<slice> <seed> <pid>" to, to count computations


class Sleepy(Method):
    """Sleeps, then predicts the tags most valid issues carry. Reports its process and BLAS threads."""

    name = "sleepy"
    Params = SleepyParams

    def fit(self, train, valid, unlabeled, context):
        if self.params.log:
            with Path(self.params.log).open("a") as log:
                log.write(f"{context.slice_name} {context.seed} {os.getpid()}\n")
        context.progress(f"sleeping {self.params.seconds:g}s")
        time.sleep(self.params.seconds)
        self.row = (valid.labels.mean(axis=0) >= 0.5).astype(np.uint8)

    def predict(self, texts):
        return np.tile(self.row, (len(texts), 1))

    def details(self):
        from threadpoolctl import threadpool_info

        return {"pid": os.getpid(), "blas_threads": max(info["num_threads"] for info in threadpool_info())}


class NeedsToken(Sleepy):
    name = "needs_token"
    resources = {"TOKEN": 1}


class NeedsUnicorn(Sleepy):
    name = "needs_unicorn"
    resources = {"UNICORN": 1}


class Hangs(Method):
    name = "hangs"

    def fit(self, train, valid, unlabeled, context):
        while True:
            time.sleep(0.1)


class Explodes(Method):
    name = "explodes"

    def fit(self, train, valid, unlabeled, context):
        raise RuntimeError("boom")


class NanScores(Method):
    name = "nan_scores"

    def fit(self, train, valid, unlabeled, context):
        self.n_tags = len(context.tags)

    def predict(self, texts):
        return np.full((len(texts), self.n_tags), np.nan)


class Dies(Method):
    """Its process exits in the middle of fit, as after a segfault or the OOM killer."""

    name = "dies"

    def fit(self, train, valid, unlabeled, context):
        os._exit(3)


@hookimpl
def register_methods(register):
    for method in (Sleepy, NeedsToken, NeedsUnicorn, Hangs, Explodes, NanScores, Dies):
        register(method)
