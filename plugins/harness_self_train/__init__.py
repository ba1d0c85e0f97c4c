"""self_train: self-training on the unlabeled pool around any registered method that gives
scores (issue 16). The base is looked up by name in the plugin registry, so a third-party
method with ``predict_scores`` works as well as the built-ins.

Nothing heavy is imported here: the base's own imports happen when it fits.
"""

from __future__ import annotations

from harness import hookimpl
from harness_self_train.method import SelfTrain, SelfTrainParams

__all__ = ["SelfTrain", "SelfTrainParams"]


@hookimpl
def register_methods(register) -> None:
    register(SelfTrain)
