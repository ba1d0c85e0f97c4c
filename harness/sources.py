"""Find a dataset's files (local data folders first, then a checksummed download) and read rows."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd

from harness.config import DatasetConfig, SourceConfig

DATA_DIR_ENV = "HARNESS_DATA_DIR"
CACHE_DIR_ENV = "HARNESS_CACHE_DIR"


class DataError(ValueError):
    """A dataset's files cannot be found, verified or read."""


def default_cache_dir() -> Path:
    import pooch

    return Path(os.environ.get(CACHE_DIR_ENV) or pooch.os_cache("fewlabels-harness"))


def data_dirs(extra: Iterable[Path] = ()) -> list[Path]:
    dirs = [Path(p) for p in extra]
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        dirs += [Path(p) for p in env.split(os.pathsep) if p]
    return dirs


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


def file_format(path: Path, source: SourceConfig, known: list[str]) -> str:
    if source.format:
        return source.format
    name = (source.member or path.name).lower()
    for fmt in sorted(known, key=len, reverse=True):  # "jsonl.gz" before "gz"-less "jsonl"
        if name.endswith("." + fmt):
            return fmt
    raise DataError(f"{path}: cannot tell the format from the name; set source.format (one of {', '.join(sorted(known))})")


Reader = Callable[[io.BufferedIOBase, str, SourceConfig], "pd.DataFrame | list[dict[str, Any]]"]


def _open_bytes(path: Path, source: SourceConfig) -> tuple[io.BufferedIOBase, str]:
    """Open the file (or its zip member) as a binary stream; return it and a name for errors."""
    if zipfile.is_zipfile(path):
        archive = zipfile.ZipFile(path)
        members = archive.namelist()
        member = source.member or (members[0] if len(members) == 1 else None)
        if member not in members:
            raise DataError(f"{path}: zip member {source.member!r} not found (members: {', '.join(members[:10])})")
        return archive.open(member), f"{path}!{member}"
    return open(path, "rb"), str(path)


def read_jsonl(stream: io.BufferedIOBase, name: str, source: SourceConfig) -> list[dict[str, Any]]:
    if name.endswith(".gz"):
        stream = gzip.GzipFile(fileobj=stream)
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
        return pd.read_csv(stream, encoding=source.encoding, encoding_errors=source.encoding_errors, keep_default_na=False, na_values=[""])
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


BUILTIN_READERS: dict[str, Reader] = {
    "jsonl": read_jsonl,
    "jsonl.gz": read_jsonl,
    "csv": read_csv,
    "parquet": read_parquet,
}


def read_rows(path: Path, source: SourceConfig, extra_readers: dict[str, Reader] | None = None) -> pd.DataFrame:
    """Read a data file into a frame of raw rows."""
    readers = {**BUILTIN_READERS, **(extra_readers or {})}
    fmt = file_format(path, source, list(readers))
    if fmt not in readers:
        raise DataError(f"{path}: no reader for format {fmt!r} (known: {', '.join(sorted(readers))})")
    stream, name = _open_bytes(path, source)
    if fmt == "jsonl.gz" and not name.endswith(".gz"):
        name += ".gz"
    with stream:
        rows = readers[fmt](stream, name, source)
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame.from_records(rows)
    frame.attrs["source_name"] = name
    return frame
