"""Augmented copies on disk: one JSON file per (augmenter setting, seed), keyed by text.

The file maps a text's SHA-256 to its augmented copies in copy order (copy 0, 1, ...). Any slice,
rerun or method variant that meets the same text under the same augmenter and seed reads the
copies instead of augmenting again; asking for more copies later only computes the new ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from harness.toolkit import cached_artifact, text_key, write_json_atomic


class AugmentedTextCache:
    def __init__(self, path: Path, description: dict) -> None:
        self.path = path
        self.description = description  # stored with the copies, for whoever opens the file
        self.copies: dict[str, list[str]] = self._read()

    def _read(self) -> dict[str, list[str]]:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))["copies"]
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            return {}

    def lacking(self, texts: list[str], copy: int) -> list[str]:
        """The distinct texts among ``texts`` that have no copy number ``copy`` yet."""
        return [t for t in dict.fromkeys(texts) if len(self.copies.get(text_key(t), [])) <= copy]

    def ensure(self, texts: list[str], copy: int, augment: Callable[[list[str]], list[str]]) -> int:
        """Give every text a copy number ``copy``, augmenting (``augment(todo)``) those that lack
        one; returns how many were augmented now. Augmenting happens under the file's lock after
        reading it again, so two cells never augment the same texts or drop each other's copies."""
        augmented = 0

        def load() -> bool | None:
            self._merge(self._read())  # what other processes wrote meanwhile
            return None if self.lacking(texts, copy) else True

        def build() -> bool:
            nonlocal augmented
            todo = self.lacking(texts, copy)
            for text, new in zip(todo, augment(todo), strict=True):
                stored = self.copies.setdefault(text_key(text), [])
                if len(stored) == copy:  # copies are kept in copy order
                    stored.append(new)
            write_json_atomic(self.path, {"augmenter": self.description, "copies": self.copies})
            augmented = len(todo)
            return True

        cached_artifact(self.path, load, build)
        return augmented

    def get(self, text: str, copy: int) -> str:
        return self.copies[text_key(text)][copy]

    def _merge(self, on_disk: dict[str, list[str]]) -> None:
        for key, stored in on_disk.items():
            if len(stored) > len(self.copies.get(key, [])):
                self.copies[key] = stored
