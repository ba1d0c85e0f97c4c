"""A llama.cpp server for a ``.gguf`` model on 127.0.0.1, from the ``xllamacpp`` wheel.

``start_server`` runs it inside this process (the server object stops it when it goes away);
``python -m harness_llm_icl.local_server MODEL`` runs one in the foreground until it is killed,
printing its base URL, for ``llm_icl.endpoint`` or any other client.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class LocalServer:
    """A running server: keep this object alive as long as the server is needed."""

    server: Any  # xllamacpp.Server
    base_url: str  # http://127.0.0.1:PORT/v1
    model_file: str


def gguf_file(model: str) -> str:
    """The ``.gguf`` file for a model name (PyPI-shipped) or a path."""
    from harness.toolkit import resolve_causal_lm

    location = resolve_causal_lm(model, parameter="model")
    if not location.gguf_file:
        raise ValueError(f"llm_icl.model {model!r} is not a .gguf file; llama.cpp serves GGUF models only")
    return str(Path(location.folder) / location.gguf_file)


def start_server(model: str, *, port: int = 0, parallel: int = 4, threads: int | None = None,
                 context_per_slot: int = 2048, alias: str | None = None) -> LocalServer:
    """Serve ``model`` on 127.0.0.1:``port`` (0: a free port) with ``parallel`` slots."""
    try:
        import xllamacpp
    except ImportError:
        raise ImportError("llm_icl serves .gguf models with llama.cpp from the xllamacpp package: "
                          "pip install xllamacpp") from None
    path = gguf_file(model)
    params = xllamacpp.CommonParams()
    params.model.path = path
    params.model_alias = {alias or Path(path).stem}  # what /v1/models reports, not the machine's path
    params.hostnames = ["127.0.0.1"]
    params.port = port
    params.n_parallel = parallel
    params.n_ctx = context_per_slot * parallel
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = threads or os.cpu_count() or 1
    server = xllamacpp.Server(params)
    return LocalServer(server, f"{server.listening_address}/v1", path)


_serving: dict[tuple[str, int], LocalServer] = {}  # one server per model and slot count, for the process's life


def shared_server(model: str, parallel: int) -> LocalServer:
    """This process's server for ``model``, started on first use."""
    key = (gguf_file(model), parallel)
    if key not in _serving:
        _serving[key] = start_server(model, parallel=parallel)
    return _serving[key]


def cache_scope(server: LocalServer) -> str:
    """What names this server in request-cache keys: the llama.cpp build and the model file, not the port."""
    from importlib import metadata

    return f"xllamacpp-{metadata.version('xllamacpp')}/{Path(server.model_file).name}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a .gguf file or a model shipped on PyPI as GGUF")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--parallel", type=int, default=4, help="requests served at once")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    args = parser.parse_args(argv)
    served = start_server(args.model, port=args.port, parallel=args.parallel, threads=args.threads)
    print(served.base_url, flush=True)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()


if __name__ == "__main__":
    main()
