"""Requests to an OpenAI-compatible server: retries, bounded concurrency, a request cache, usage.

Every POST goes through ``Endpoint.post``. Its response is looked up first in a SQLite cache
keyed by the endpoint, the model id the server reports and the full payload, so a rerun sends
nothing and a killed run keeps every answer it had (each one is committed when it arrives). A
429, a 5xx or a connection error is retried with exponential backoff that honours
``Retry-After``. The API key is read from the environment at request time and sent as a header;
it never enters a cache key, a cached body, a record or an error message.
"""

from __future__ import annotations

import email.utils
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from harness.toolkit import stable_hash

T = TypeVar("T")
R = TypeVar("R")
RETRIED_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
MAX_BACKOFF_S = 30.0


class EndpointError(RuntimeError):
    """A server that cannot be reached or that answers without what a scoring mode needs."""


@dataclass
class Usage:
    """What a cell costs at the server. Requests and tokens count each distinct answer the cell
    needs once, cached ones included (their bodies keep ``usage``), so a rerun from the cache
    records the same cost; ``sent`` and ``seconds`` are what this run sent and waited for."""

    requests: int = 0
    sent: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, body: dict[str, Any], seconds: float | None) -> None:
        """One answer; ``seconds`` is None for one served from the cache."""
        usage = body.get("usage") or {}
        with self.lock:
            self.requests += 1
            self.prompt_tokens += int(usage.get("prompt_tokens") or 0)
            self.completion_tokens += int(usage.get("completion_tokens") or 0)
            if seconds is not None:
                self.sent += 1
                self.seconds += seconds

    def as_dict(self) -> dict[str, float]:
        return {"requests": self.requests, "sent": self.sent, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "request_seconds": round(self.seconds, 3)}


class RequestCache:
    """JSON responses by key in one SQLite file, shared by threads and processes (WAL)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, body TEXT NOT NULL)")
        self._db.commit()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT body FROM responses WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, body: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO responses (key, body) VALUES (?, ?)", (key, json.dumps(body)))
            self._db.commit()  # at once: a killed run keeps every answer that arrived


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (a number or an HTTP date); None if absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class Endpoint:
    """One OpenAI-compatible API (``base_url`` ends in ``/v1``) used for one model."""

    def __init__(self, base_url: str, model: str | None, cache: RequestCache | None, *, api_key_env: str | None = None,
                 timeout_s: float = 120.0, max_retries: int = 5, concurrency: int = 4, transport: Any = None,
                 sleep: Callable[[float], None] = time.sleep, cache_scope: str | None = None) -> None:
        import httpx

        self.base_url = base_url.rstrip("/")
        # what the cache keys name instead of the address: a server this process starts has a new port each time
        self.cache_scope = cache_scope
        self.requested_model = model
        self.cache = cache
        self.api_key_env = api_key_env
        self.max_retries = max_retries
        self.concurrency = concurrency
        self.sleep = sleep
        self.usage = Usage()
        self._http = httpx.Client(timeout=httpx.Timeout(timeout_s), transport=transport,
                                  limits=httpx.Limits(max_connections=max(concurrency, 1) + 2))
        self._model_id: str | None = None
        self.system_fingerprint: str | None = None
        self._answers: dict[str, dict[str, Any]] = {}  # this run's answers: a repeated request costs nothing
        self._answers_lock = threading.Lock()

    # -------------------------------------------------------------- plumbing

    def _headers(self) -> dict[str, str]:
        if not self.api_key_env:
            return {}
        key = os.environ.get(self.api_key_env)
        if not key:
            raise EndpointError(f"llm_icl.api_key_env names {self.api_key_env!r}, which is not set in the environment")
        return {"Authorization": f"Bearer {key}"}

    def url(self, path: str, *, under_root: bool = False) -> str:
        """``path`` under the API, or under the server's root (llama.cpp's ``/tokenize``)."""
        if under_root and self.base_url.endswith("/v1"):
            return self.base_url[: -len("/v1")] + path
        return self.base_url + path

    def _send(self, method: str, url: str, payload: dict[str, Any] | None) -> dict[str, Any]:
        """One request with retries; the decoded JSON body, or EndpointError in one line."""
        import httpx

        attempt = 0
        while True:
            wait: float | None = None
            try:
                response = self._http.request(method, url, json=payload, headers=self._headers())
            except httpx.TimeoutException:
                problem = "timed out"
            except httpx.TransportError as exc:
                problem = f"cannot be reached ({type(exc).__name__})"
            else:
                if response.status_code < 400:
                    try:
                        body = response.json()
                    except ValueError:
                        raise EndpointError(f"{url} answered with a body that is not JSON (status {response.status_code})") from None
                    if not isinstance(body, dict):
                        raise EndpointError(f"{url} answered with JSON that is not an object")
                    return body
                problem = f"answered HTTP {response.status_code}: {_short_error(response)}"
                if response.status_code not in RETRIED_STATUS:
                    raise EndpointError(f"{url} {problem}")
                wait = retry_after_seconds(response.headers.get("retry-after"))
            if attempt == self.max_retries:
                raise EndpointError(f"{url} {problem} (after {attempt + 1} attempts)")
            self.sleep(min(MAX_BACKOFF_S, wait if wait is not None else 0.5 * 2 ** attempt))
            attempt += 1

    # -------------------------------------------------------------- the model

    def model_id(self) -> str:
        """The model id the server reports for ``model`` (``/v1/models``); cached, so a stopped
        server whose answers are all cached still scores."""
        if self._model_id is None:
            key = stable_hash(["models", self.cache_scope or self.base_url, self.requested_model])
            try:
                body = self._send("GET", self.url("/models"), None)
            except EndpointError:
                cached = self.cache.get(key) if self.cache else None
                if cached is None:
                    raise
                body = cached
            else:
                if self.cache:
                    self.cache.put(key, body)
            ids = [str(m.get("id")) for m in body.get("data") or [] if isinstance(m, dict) and m.get("id")]
            if not ids:
                raise EndpointError(f"{self.url('/models')} lists no model (field 'data[].id')")
            if self.requested_model is None:
                self._model_id = ids[0]
            elif self.requested_model in ids:
                self._model_id = self.requested_model
            elif len(ids) == 1:  # llama.cpp serves one model whatever name a request gives
                self._model_id = ids[0]
            else:
                raise EndpointError(f"{self.url('/models')} does not list llm_icl.model {self.requested_model!r} "
                                    f"(it lists {', '.join(ids[:5])})")
        return self._model_id

    def post(self, path: str, payload: dict[str, Any], *, under_root: bool = False) -> dict[str, Any]:
        """POST ``payload`` (with the model filled in) unless the cache has its answer."""
        payload = {"model": self.requested_model or self.model_id(), **payload}
        url = self.url(path, under_root=under_root)
        key = stable_hash([self.cache_scope or self.base_url, path, under_root, self.model_id(), payload])
        with self._answers_lock:
            if key in self._answers:
                return self._answers[key]
        body = self.cache.get(key) if self.cache is not None else None
        if body is not None:
            self.usage.add(body, None)
        else:
            started = time.perf_counter()
            body = self._send("POST", url, payload)
            self.usage.add(body, time.perf_counter() - started)
            if self.cache is not None:
                self.cache.put(key, body)
        if body.get("system_fingerprint"):
            self.system_fingerprint = str(body["system_fingerprint"])
        with self._answers_lock:
            self._answers[key] = body
        return body

    def map(self, work: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        """``work`` over ``items`` with at most ``concurrency`` in flight, results in order."""
        items = list(items)
        if self.concurrency <= 1 or len(items) <= 1:
            return map(work, items)
        pool = ThreadPoolExecutor(max_workers=self.concurrency)
        try:
            return iter(list(pool.map(work, items)))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _short_error(response: Any) -> str:
    """The server's own error message, cut to one short line (never the request's headers)."""
    try:
        body = response.json()
        message = body.get("error", body) if isinstance(body, dict) else body
        if isinstance(message, dict):
            message = message.get("message", message)
        text = str(message)
    except ValueError:
        text = response.text
    text = " ".join(text.split())
    return text[:200] or response.reason_phrase
