"""Augmented copies on disk: one JSON file per (augmenter setting, seed), keyed by text.

The file maps a text's SHA-256 to its augmented copies in copy order (copy 0, 1, ...). Any slice,
rerun or method variant that meets the same text under the same augmenter and seed reads the
copies instead of augmenting again; asking for more copies later only computes the new ones.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.hashing import text_key
from harness.locks import artifact_lock
from harness.store import write_json_atomic


class AugmentedTextCache:
    def __init__(self, path: Path, description: dict) -> None:
        self.path = path
        self.description = description  # stored with the copies, for whoever opens the file
        self.copies: dict[str, list[str]] = self._read()
        self._added = False

    def _read(self) -> dict[str, list[str]]:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))["copies"]
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            return {}

    def lacking(self, texts: list[str], copy: int) -> list[str]:
        """The distinct texts among ``texts`` that have no copy number ``copy`` yet."""
        return [t for t in dict.fromkeys(texts) if len(self.copies.get(text_key(t), [])) <= copy]

    def add(self, texts: list[str], copy: int, augmented: list[str]) -> None:
        for text, new in zip(texts, augmented, strict=True):
            stored = self.copies.setdefault(text_key(text), [])
            if len(stored) == copy:  # copies are kept in copy order
                stored.append(new)
                self._added = True

    def get(self, text: str, copy: int) -> str:
        return self.copies[text_key(text)][copy]

    def save(self) -> None:
        """Write the copies, merged with what another process may have written meanwhile."""
        if not self._added:
            return
        # Read, merge and write under the file's lock, so concurrent cells never drop each other's copies.
        with artifact_lock(self.path):
            on_disk = self._read()
            for key, stored in on_disk.items():
                if len(stored) > len(self.copies.get(key, [])):
                    self.copies[key] = stored
            write_json_atomic(self.path, {"augmenter": self.description, "copies": self.copies})
        self._added = False
