"""Zero-shot tagging (no training labels): NLI or embedding-similarity scores per (issue, tag),
then a top-k or threshold rule chosen on the valid split."""

from __future__ import annotations

from harness import hookimpl
from harness_zeroshot.method import ZeroShot


@hookimpl
def register_methods(register) -> None:
    register(ZeroShot)
