"""Datasets and training slices for a run, loaded once per process and kept (memoised).

``Settings`` says where things are; it is plain data, so a cell spec can carry it to another
process. The readers come from the caller's plugin manager, never from a global one, so that
readers registered on a manager built in a test or an application are the ones used.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from harness.config import load_config
from harness.data import PreparedDataset, prepare
from harness.sources import Reader, data_dirs
from harness.splits import TrainSlice, nested_slices


@dataclass(frozen=True)
class Settings:
    """Where things are: results, caches, data files and extra dataset config folders."""

    results_dir: str
    cache_dir: str
    data_dirs: tuple[str, ...] = ()
    datasets_cfg_dirs: tuple[str, ...] = ()


@functools.lru_cache(maxsize=8)
def load_dataset(name: str, settings: Settings, readers: Mapping[str, Reader]) -> PreparedDataset:
    """The prepared dataset ``name``; ``readers`` is a plugin manager's ``registry.readers``."""
    cfg = load_config(name, [Path(d) for d in settings.datasets_cfg_dirs])
    return prepare(cfg, data_dirs(map(Path, settings.data_dirs)), Path(settings.cache_dir), readers)


@functools.lru_cache(maxsize=64)
def train_slices(
    name: str, settings: Settings, readers: Mapping[str, Reader], sizes: tuple[int | str, ...], seed: int
) -> dict[str, TrainSlice]:
    """The nested training slices of ``sizes`` for one seed, by slice name."""
    dataset = load_dataset(name, settings, readers)
    train_labels = dataset.labels[dataset.split_rows["train"]]
    return {s.name: s for s in nested_slices(train_labels, list(sizes), seed)}
