"""Transformer fine-tuning methods: ``finetune`` (vanilla) and ``adapt_finetune`` (masked-LM
domain adaptation on the unlabeled pool, then fine-tuning), as in the book's chapter 9.

torch and transformers are imported inside ``fit``/``predict`` only, so listing plugins stays fast.
"""

from __future__ import annotations

from harness import hookimpl

from .methods import AdaptFineTune, AdaptFineTuneParams, FineTune, FineTuneParams

__all__ = ["AdaptFineTune", "AdaptFineTuneParams", "FineTune", "FineTuneParams"]


@hookimpl
def register_methods(register) -> None:
    register(FineTune)
    register(AdaptFineTune)
