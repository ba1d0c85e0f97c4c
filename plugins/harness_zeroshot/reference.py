"""The book's way of scoring, kept as the reference the batched NLI scorer is tested and timed
against, and a MiniLM-sized NLI model to time it with (none ships offline)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from harness.toolkit import resolve_model

NLI_LABELS = {"contradiction": 0, "neutral": 1, "entailment": 2}  # bart-large-mnli's order


def pipeline_per_text(pipe: Any, texts: list[str], tags: list[str], template: str) -> np.ndarray:
    """One zero-shot pipeline call per text with ``multi_label=True``, as the book does; scores
    put back in tag order, shape (len(texts), len(tags))."""
    rows = []
    for text in texts:
        out = pipe(text, candidate_labels=tags, hypothesis_template=template, multi_label=True)
        by_tag = dict(zip(out["labels"], out["scores"]))
        rows.append([by_tag[tag] for tag in tags])
    return np.array(rows)


def build_minilm_nli(folder: Path, max_tokens: int | None = None) -> Path:
    """all-MiniLM-L6-v2's body with a new, seeded 3-label NLI head, saved with its tokenizer
    (limit ``max_tokens``, else MiniLM's own) into ``folder``. Its scores mean nothing, but its
    cost per pair and its activations are those of a real MiniLM NLI cross-encoder."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if (folder / "config.json").exists():
        return folder
    source = resolve_model("sentence-transformers/all-MiniLM-L6-v2")
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(
        source, num_labels=3, label2id=NLI_LABELS, id2label={i: label for label, i in NLI_LABELS.items()}
    )
    model.save_pretrained(folder)
    limit = {} if max_tokens is None else {"model_max_length": max_tokens}
    AutoTokenizer.from_pretrained(source, **limit).save_pretrained(folder)
    return folder
