"""Prompt building as token ids: instruction, demonstrations, the issue, then "Tags:".

Pieces are tokenized separately and concatenated, so an issue's text is cut to the token
budget exactly and the prefix shared by many issues is the same ids every time:

    <instruction: "Tag each issue with one or more of these tags:" + one line per tag>
    \\n\\nIssue: <demonstration text, at most max_text_tokens>\\nTags: bug, documentation
    ...
    \\n\\nIssue: <the issue, at most max_text_tokens>\\nTags:   <- then " bug", " documentation", ...
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Task = Literal["multilabel", "multiclass"]
NO_TAG = "none"  # the answer of a multi-label demonstration that carries no tag


ISSUE_LABEL = "\n\nIssue:"


def default_instruction(task: Task) -> str:
    if task == "multiclass":
        return "Tag each issue with exactly one of these tags:"
    return "Tag each issue with one or more of these tags:"


def answer_label(task: Task) -> str:
    return "\nTag:" if task == "multiclass" else "\nTags:"


def instruction_text(tags: list[str], descriptions: dict[str, str], task: Task, instruction: str | None = None,
                     markers: list[str] | None = None) -> str:
    """The instruction and one line per tag (``- tag: description``, or ``A. tag`` with markers)."""
    lines = [instruction or default_instruction(task)]
    for i, tag in enumerate(tags):
        head = f"{markers[i]}. {tag}" if markers else f"- {tag}"
        description = descriptions.get(tag)
        lines.append(f"{head}: {description}" if description else head)
    return "\n".join(lines)


def check_descriptions(tags: list[str], descriptions: dict[str, str]) -> None:
    unknown = sorted(set(descriptions) - set(tags))
    if unknown:
        raise ValueError(f"labels.descriptions names {unknown}, which are not tags of the dataset (tags: {tags})")


def answer_names(tags: list[str], label_row: np.ndarray) -> str:
    """A demonstration's answer: its tags joined by commas, or ``none``."""
    names = [tag for tag, on in zip(tags, label_row) if on]
    return ", ".join(names) if names else NO_TAG


@dataclass
class PromptBuilder:
    """Token ids of the prompt's pieces for one tokenizer, tag set and token budget."""

    tokenizer: Any  # a transformers tokenizer
    tags: list[str]
    descriptions: dict[str, str]
    max_text_tokens: int
    task: Task = "multilabel"
    instruction: str | None = None

    def __post_init__(self) -> None:
        check_descriptions(self.tags, self.descriptions)
        self.answer_label = answer_label(self.task)
        self._issue_ids = self._ids(ISSUE_LABEL)
        self._answer_ids = self._ids(self.answer_label)
        # what the model is asked to continue with, one per tag (scored after the answer label)
        self.continuations = [self._ids(" " + tag) for tag in self.tags]

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def instruction_text(self) -> str:
        return instruction_text(self.tags, self.descriptions, self.task, self.instruction)

    def instruction_ids(self) -> list[int]:
        """The instruction with the tokenizer's special tokens (BOS), the start of every prompt."""
        return list(self.tokenizer(self.instruction_text())["input_ids"])

    def text_ids(self, text: str) -> list[int]:
        """An issue's tokens, cut to the budget."""
        return self._ids(" " + " ".join(text.split()))[: self.max_text_tokens]

    def issue_ids(self, text: str) -> list[int]:
        """"\\n\\nIssue: <text>\\nTags:": the segment after which the tags are scored."""
        return self._issue_ids + self.text_ids(text) + self._answer_ids

    def answer_text(self, label_row: np.ndarray) -> str:
        return " " + answer_names(self.tags, label_row)

    def demonstration_ids(self, text: str, label_row: np.ndarray) -> list[int]:
        return self.issue_ids(text) + self._ids(self.answer_text(label_row))

    def demonstrations_ids(self, texts: list[str], labels: np.ndarray) -> list[int]:
        return [i for text, row in zip(texts, labels) for i in self.demonstration_ids(text, row)]

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)


def fixed_demonstrations(labels: np.ndarray, k: int, rng: np.random.Generator) -> list[int]:
    """k training rows covering as many tags as possible: rarest tag first, a random issue
    carrying it that is not chosen yet; then random issues. Returned in a random order."""
    n = len(labels)
    if k >= n:
        chosen = list(range(n))
    else:
        chosen = []
        counts = labels.sum(axis=0)
        for tag in np.argsort(counts, kind="stable"):
            if len(chosen) == k:
                break
            if counts[tag] == 0 or labels[chosen, tag].any():
                continue  # no example, or already shown by a chosen issue
            candidates = [i for i in np.flatnonzero(labels[:, tag]) if i not in chosen]
            if candidates:
                chosen.append(int(rng.choice(candidates)))
        rest = [i for i in range(n) if i not in chosen]
        chosen += [int(i) for i in rng.choice(rest, size=k - len(chosen), replace=False)]
    return [chosen[i] for i in rng.permutation(len(chosen))]


def nearest_demonstrations(query_vectors: np.ndarray, train_vectors: np.ndarray, k: int) -> np.ndarray:
    """(n, min(k, n_train)) train rows per query by cosine similarity, least similar first so
    that the closest demonstration stands right before the issue; ties go to the lower row."""
    k = min(k, len(train_vectors))
    if k == 0:
        return np.zeros((len(query_vectors), 0), dtype=np.int64)
    unit = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True).clip(min=1e-12)  # noqa: E731
    similarity = unit(query_vectors) @ unit(train_vectors).T
    nearest = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    return nearest[:, ::-1]
