"""setfit: contrastive fine-tuning of a sentence-transformer on pairs drawn from the labeled
slice, then a logistic-regression head on its embeddings (Tunstall et al. 2022, "Efficient
Few-Shot Learning Without Prompts").

torch and sentence-transformers are imported only when the method fits, so loading this
plugin stays cheap.
"""

from __future__ import annotations

from harness import hookimpl
from harness.cores import choose_openmp_waiting
from harness_setfit.method import SetFit, SetFitParams

__all__ = ["SetFit", "SetFitParams"]

# how torch's threads wait, from how busy the cores are: harness/cores.py (libgomp reads it when torch loads)
choose_openmp_waiting()


@hookimpl
def register_methods(register) -> None:
    register(SetFit)
