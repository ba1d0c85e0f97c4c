"""Shared test setup: the real data mirror and small dataset folders built per test."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no test may reach a model hub

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MIRROR = SHARED_DATA / "github-issues-datasets.jsonl.gz"


@pytest.fixture
def mirror_dir() -> Path:
    if not MIRROR.exists():
        pytest.skip(f"data mirror not found at {MIRROR}")
    return SHARED_DATA


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def toy_rows(n: int = 40) -> list[dict]:
    """GitHub-issue-shaped rows with label objects; every fifth row is unlabeled."""
    names = ["bug", "docs", "feature"]
    rows = []
    for i in range(n):
        labels = [] if i % 5 == 4 else [{"name": names[i % 3]}] + ([{"name": "docs"}] if i % 7 == 0 else [])
        rows.append({"title": f"issue {i} about {names[i % 3]}", "body": None if i % 6 == 0 else f"body {i}",
                     "labels": labels, "pull_request": None if i % 2 else {"url": "x"}})
    return rows


def toy_config(**overrides) -> dict:
    cfg = {
        "name": "toy",
        "source": {"file": "toy.jsonl"},
        "text": "{title}\n\n{body}",
        "labels": {"field": "labels"},
        "slices": [4, 8, "all"],
    }
    cfg.update(overrides)
    return cfg


# Four frequent tags of the mirror; issues carrying exactly one of them make an easy, balanced sample.
SAMPLE_TAGS = ["bug", "dataset request", "enhancement", "dataset-viewer"]


def single_tag_issues(dataset, split: str, per_tag: int, tags: list[str] = SAMPLE_TAGS):
    """The first ``per_tag`` issues of ``split`` carrying only that tag, for each of ``tags``."""
    import numpy as np

    from harness.methods import LabeledTexts

    data = dataset.labeled(split)
    rows: list[int] = []
    for tag in tags:
        only_this = (data.labels[:, dataset.tags.index(tag)] == 1) & (data.labels.sum(axis=1) == 1)
        rows += np.flatnonzero(only_this)[:per_tag].tolist()
    return LabeledTexts([data.texts[i] for i in rows], data.labels[rows], data.tags)
