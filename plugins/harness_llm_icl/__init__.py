"""llm_icl: in-context few-shot tagging with a causal language model.

The prompt holds an instruction naming the tags, k labeled demonstrations from the training
slice and the issue; every tag is scored by the model's log-probability of naming it after
"Tags:". torch and transformers are imported only when a method fits.
"""

from __future__ import annotations

from harness import hookimpl
from harness_llm_icl.method import LlmIcl, LlmIclParams

__all__ = ["LlmIcl", "LlmIclParams"]


@hookimpl
def register_methods(register) -> None:
    register(LlmIcl)
