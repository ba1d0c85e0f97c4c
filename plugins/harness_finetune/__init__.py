"""Transformer fine-tuning methods: ``finetune`` (vanilla) and ``adapt_finetune`` (masked-LM
domain adaptation on the unlabeled pool, then fine-tuning), as in the book's chapter 9.

torch and transformers are imported inside ``fit``/``predict`` only, so listing plugins stays fast.
"""

from __future__ import annotations

import os

from harness import hookimpl

from .methods import AdaptFineTune, AdaptFineTuneParams, FineTune, FineTuneParams

__all__ = ["AdaptFineTune", "AdaptFineTuneParams", "FineTune", "FineTuneParams"]

# torch's OpenMP runtime (libgomp) lets a thread that waits for the others spin for about 3 ms
# (300,000 spins) before it sleeps. On cores shared with another busy process the spinning takes
# the core from the thread still working, and training ran 3-10x slower; sleeping at once
# (OMP_WAIT_POLICY=PASSIVE) costs about 25% on idle cores, where the waits between torch's many
# short parallel regions are far below a millisecond. A short spin keeps most of both (see
# benchmarks/bench_thread_waiting.py). libgomp reads this once, when torch loads, so it is set
# when the plugin is imported: before any method imports torch, in the driver and in each worker.
# It applies to every torch user in the process; a user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT wins.
SHORT_SPIN = "10000"
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", SHORT_SPIN)


@hookimpl
def register_methods(register) -> None:
    register(FineTune)
    register(AdaptFineTune)
