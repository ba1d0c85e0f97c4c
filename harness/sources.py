"""Find a dataset's rows: files (local data folders first, then a checksummed download), read by
format and compression, or a Hugging Face Hub dataset.

This module is also the core plugin that registers the built-in readers (jsonl, csv, parquet)
through ``register_dataset_loaders``, the hook a third-party reader uses.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd

from harness.hookspecs import hookimpl
from harness.config import DatasetConfig, SourceConfig
from harness.errors import HarnessError
from harness.hashing import sha256_of

DATA_DIR_ENV = "HARNESS_DATA_DIR"
CACHE_DIR_ENV = "HARNESS_CACHE_DIR"


class DataError(HarnessError):
    """A dataset's files cannot be found, verified or read."""


def default_cache_dir() -> Path:
    import pooch

    return Path(os.environ.get(CACHE_DIR_ENV) or pooch.os_cache("fewlabels-harness"))


def data_dirs(extra: Iterable[Path] = ()) -> list[Path]:
    """Folders searched for data files: the given ones, HARNESS_DATA_DIR's, then the current
    folder (where `harness dataset new` finds the file its config names)."""
    dirs = [Path(p) for p in extra]
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        dirs += [Path(p) for p in env.split(os.pathsep) if p]
    return dirs + [Path(".")]


def locate(cfg: DatasetConfig, search_dirs: list[Path], cache_dir: Path) -> dict[str, Path]:
    """Map each part of the source ('' for a single file, else a split name) to a local path."""
    source = cfg.source
    wanted = source.files if source.files else {"": source.file}
    located: dict[str, Path] = {}
    for part, file_name in wanted.items():
        located[part] = _locate_one(cfg.name, source, file_name, search_dirs, cache_dir)
    return located


def _locate_one(
    dataset: str, source: SourceConfig, file_name: str | None, search_dirs: list[Path], cache_dir: Path
) -> Path:
    if file_name:
        for folder in search_dirs:
            candidate = folder / file_name
            # lexically, so that a link inside the data folder may still point elsewhere
            if not Path(os.path.abspath(candidate)).is_relative_to(os.path.abspath(folder)):
                raise DataError(
                    f"dataset {dataset!r}: source file {file_name!r} leaves the data folder {folder}; "
                    "give a path inside it and point --data-dir at the folder that holds the file"
                )
            if candidate.is_file():
                if source.sha256 and sha256_of(candidate) != source.sha256:
                    raise DataError(
                        f"dataset {dataset!r}: checksum mismatch for {candidate}: sha256 is "
                        f"{sha256_of(candidate)}, the config expects {source.sha256}"
                    )
                return candidate
    where = ", ".join(str(d) for d in search_dirs) or "no data folder set"
    if not source.url:
        raise DataError(
            f"dataset {dataset!r}: file {file_name!r} not found (searched: {where}) and the config "
            f"has no 'url'; point --data-dir or {DATA_DIR_ENV} at a folder holding it"
        )
    return _download(dataset, source, file_name, where, cache_dir)


def _download(dataset: str, source: SourceConfig, file_name: str | None, where: str, cache_dir: Path) -> Path:
    import pooch

    try:
        return Path(
            pooch.retrieve(
                url=source.url,
                known_hash=f"sha256:{source.url_sha256}" if source.url_sha256 else None,
                path=cache_dir / "downloads",
                progressbar=False,
            )
        )
    except ValueError as exc:  # pooch reports a checksum mismatch as ValueError
        raise DataError(f"dataset {dataset!r}: download of {source.url} failed its checksum: {exc}") from None
    except Exception as exc:
        raise DataError(
            f"dataset {dataset!r}: file {file_name or '(none)'} not found locally (searched: {where}) "
            f"and download of {source.url} failed ({type(exc).__name__}); offline, put the file in a "
            f"folder and pass --data-dir DIR or set {DATA_DIR_ENV}"
        ) from None


Reader = Callable[[io.BufferedIOBase, str, SourceConfig], "pd.DataFrame | list[dict[str, Any]]"]

# suffix -> how to open a compressed stream; any format may be compressed (issues.csv.gz, x.parquet.zst)
COMPRESSIONS: dict[str, Callable[[io.BufferedIOBase], io.BufferedIOBase]] = {
    "gz": lambda stream: gzip.GzipFile(fileobj=stream),
    "bz2": lambda stream: bz2.BZ2File(stream),
    "xz": lambda stream: lzma.LZMAFile(stream),
    "zst": lambda stream: _zstd_reader(stream),
}
# What a broken compressed stream raises while it is read: truncated (EOFError), not compressed
# at all (gzip.BadGzipFile, an OSError), corrupt (zlib.error, lzma.LZMAError, zstd errors).
_BROKEN_STREAM = (EOFError, OSError, zlib.error, lzma.LZMAError)


def _zstd_reader(stream: io.BufferedIOBase) -> io.BufferedIOBase:
    try:
        import zstandard
    except ImportError:
        raise DataError("reading .zst files needs the zstandard package: pip install zstandard") from None
    return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(stream))  # adds line iteration


def _compression_of(name: str) -> str | None:
    return next((c for c in COMPRESSIONS if name.endswith("." + c)), None)


def file_format(name: str, source: SourceConfig, known: Iterable[str]) -> tuple[str, str | None]:
    """The (format, compression) of the file (or zip member) ``name``: from ``source.format`` if
    set, else from the name."""
    path = name
    name = name.rsplit("!", 1)[-1].lower()
    compression = _compression_of(name)
    if source.format:  # "csv" or "csv.gz"; a compressed file name still says how to open the file
        name = "x." + source.format.lower()
        compression = _compression_of(name) or compression
    if _compression_of(name):
        name = name[: name.rindex(".")]
    for fmt in sorted(known, key=len, reverse=True):  # the longest suffix wins
        if name.endswith("." + fmt):
            return fmt, compression
    if source.format:
        raise DataError(f"{path}: no reader for format {source.format!r} (known: {', '.join(sorted(known))})")
    raise DataError(
        f"{path}: cannot tell the format from the name; set source.format (one of {', '.join(sorted(known))}, "
        f"optionally compressed: .{', .'.join(COMPRESSIONS)})"
    )


def open_bytes(path: Path, source: SourceConfig) -> tuple[io.BufferedIOBase, str]:
    """Open the file (or its zip member) as a binary stream; return it and a name for errors."""
    if zipfile.is_zipfile(path):
        archive = zipfile.ZipFile(path)
        members = [m for m in archive.namelist() if not m.endswith("/")]
        if source.member is None and len(members) != 1:
            raise DataError(
                f"{path}: the zip archive holds {len(members)} files ({', '.join(members[:10])}); "
                "set source.member to the one to read"
            )
        member = source.member or members[0]
        if member not in members:
            raise DataError(f"{path}: zip member {member!r} not found (members: {', '.join(members[:10])})")
        return archive.open(member), f"{path}!{member}"
    return open(path, "rb"), str(path)


def read_jsonl(stream: io.BufferedIOBase, name: str, source: SourceConfig) -> list[dict[str, Any]]:
    rows = []
    for number, raw in enumerate(stream, start=1):
        try:
            line = raw.decode(source.encoding, errors=source.encoding_errors)
        except UnicodeDecodeError as exc:
            raise DataError(
                f"{name}: line {number}: bytes {raw[exc.start:exc.end]!r} at column {exc.start} are not "
                f"valid {source.encoding}; set source.encoding or source.encoding_errors: replace"
            ) from None
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{name}: line {number}: malformed JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(row, dict):
            raise DataError(f"{name}: line {number}: expected a JSON object, got {type(row).__name__}")
        rows.append(row)
    return rows


def read_csv(stream: io.BufferedIOBase, name: str, source: SourceConfig) -> pd.DataFrame:
    try:
        return pd.read_csv(stream, sep=source.delimiter or ",", encoding=source.encoding,
                           encoding_errors=source.encoding_errors, keep_default_na=False, na_values=[""])
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{name}: bytes at offset {exc.start} are not valid {source.encoding}; set source.encoding "
            "or source.encoding_errors: replace"
        ) from None
    except pd.errors.ParserError as exc:
        raise DataError(f"{name}: malformed CSV: {exc}") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{name}: empty CSV: no header row of field names") from None


def read_parquet(stream: io.BufferedIOBase, name: str, source: SourceConfig) -> pd.DataFrame:
    try:
        return pd.read_parquet(io.BytesIO(stream.read()))
    except Exception as exc:
        raise DataError(f"{name}: not a readable parquet file: {exc}") from None


BUILTIN_READERS: dict[str, Reader] = {"jsonl": read_jsonl, "csv": read_csv, "parquet": read_parquet}


@hookimpl
def register_dataset_loaders(register: Callable[[str, Reader], None]) -> None:
    for fmt, reader in BUILTIN_READERS.items():
        register(fmt, reader)


def read_rows(path: Path, source: SourceConfig, readers: Mapping[str, Reader]) -> pd.DataFrame:
    """Read a data file (compressed or not, maybe inside a zip) into a frame of raw rows."""
    stream, name = open_bytes(path, source)
    try:
        fmt, compression = file_format(name, source, list(readers))
    except DataError:
        stream.close()
        raise
    try:
        with stream:
            opened = COMPRESSIONS[compression](stream) if compression else stream
            with opened:
                rows = readers[fmt](opened, name, source)
    except _BROKEN_STREAM as exc:
        what = f".{compression} file" if compression else f"{fmt} file"
        raise DataError(f"{name}: not a readable {what}: {type(exc).__name__}: {exc}") from None
    return rows if isinstance(rows, pd.DataFrame) else pd.DataFrame.from_records(rows)


def read_hub(dataset: str, source: SourceConfig, search_dirs: list[Path]) -> tuple[pd.DataFrame, str]:
    """Rows of a Hugging Face Hub dataset, and a name for messages.

    A folder saved with ``save_to_disk`` at ``<data dir>/<owner>/<name>`` wins (offline, no cache
    needed); else the ``datasets`` library reads its cache or, online, the Hub at ``revision``.
    """
    try:
        import datasets
    except ImportError:
        raise DataError(f"dataset {dataset!r}: source.hf needs the datasets library: pip install 'fewlabels-harness[hf]'") from None
    name = f"hf:{source.hf}" + (f"@{source.revision}" if source.revision else "")
    saved = next((folder / source.hf for folder in search_dirs if (folder / source.hf).is_dir()), None)
    try:
        if saved is not None:
            loaded = datasets.load_from_disk(str(saved))
            name = str(saved)
        else:
            loaded = datasets.load_dataset(source.hf, source.config, revision=source.revision, split=source.split)
    except Exception as exc:  # offline without a cache, unknown dataset, revision or split...
        where = ", ".join(str(folder / source.hf) for folder in search_dirs) or "no data folder set"
        raise DataError(
            f"dataset {dataset!r}: Hugging Face dataset {source.hf!r} could not be read ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); offline, save it with save_to_disk into DIR/{source.hf} "
            f"and pass --data-dir DIR (searched: {where}), or fill the datasets cache online first"
        ) from None
    if isinstance(loaded, datasets.DatasetDict):
        splits = list(loaded)
        if source.split is None and len(splits) != 1:
            raise DataError(f"{name}: the dataset has splits {', '.join(splits)}; set source.split to the one to read")
        split = source.split or splits[0]
        if split not in loaded:
            raise DataError(f"{name}: no split {split!r} (splits: {', '.join(splits)}); fix source.split")
        loaded = loaded[split]
    return loaded.to_pandas(), name
