"""setfit: contrastive fine-tuning of a sentence-transformer on pairs drawn from the labeled
slice, then a logistic-regression head on its embeddings (Tunstall et al. 2022, "Efficient
Few-Shot Learning Without Prompts").

torch and sentence-transformers are imported only when the method fits, so loading this
plugin stays cheap.
"""

from __future__ import annotations

from harness import hookimpl
from harness_setfit.method import SetFit, SetFitParams

__all__ = ["SetFit", "SetFitParams"]


@hookimpl
def register_methods(register) -> None:
    register(SetFit)
