"""The built-in methods pass the same contract suite that plugin authors use (harness.testing)."""

from __future__ import annotations

from harness.testing import MethodContract
from harness_nb import NaiveBayes


class TestNaiveBayesContract(MethodContract):
    method_class = NaiveBayes
    other_params = {"alpha": 0.5}
    min_micro_f1 = 0.6
