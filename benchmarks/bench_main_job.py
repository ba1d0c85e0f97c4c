"""The main job, `harness run --methods all --seeds 0`, one method at a time: wall time, peak RSS
and bytes written per method, into a fresh results and cache folder.

Each method runs as its own `harness run` process (serial executor, `--quiet`), in the order of
the main job and on the same folder, so that a later method reuses what an earlier one cached
(the MiniLM embeddings), as in one run of all methods. Bytes written are what the process sent
to storage (`write_bytes` of /proc/self/io, temporary files included), read when it exits;
"kept" is what stays in the folder.

    python benchmarks/bench_main_job.py --data-dir ../shared/data
    python benchmarks/bench_main_job.py --data-dir ../shared/data --hog            # also beside a busy loop
    git worktree add /tmp/today main                                               # or any older commit
    python benchmarks/bench_main_job.py --data-dir ../shared/data --baseline-src /tmp/today

``--device cuda`` (or cpu) runs this checkout's torch methods there (the baseline side gets no
``--device``: older checkouts have none and use their own defaults). ``--seeds`` runs more seeds.
Beside each run's wall time the table gives the seconds spent outside cells (process start-up,
imports, planning, reports) and the sum of the cells' own times, from the records the run wrote.

``--baseline-src`` runs the same job from another checkout of the project (its `harness` and
`plugins/` first on PYTHONPATH) beside this one, method by method, so that both sides see the
same machine load. ``--hog`` runs every configuration a second time beside a process that
busy-loops on one core, as another program on a user's machine does.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from harness.testing import busy_loop

BOOK_METHODS = ("nb", "nb_aug", "zeroshot", "knn_embed", "finetune", "adapt_finetune")

# Runs the CLI and, at exit, writes the bytes this process sent to storage to $BENCH_IO_FILE.
LAUNCHER = """
import atexit, os, sys
def _write_bytes():
    with open("/proc/self/io") as io:
        fields = dict(line.split(": ") for line in io.read().splitlines())
    with open(os.environ["BENCH_IO_FILE"], "w") as out:
        out.write(fields["write_bytes"].strip())
atexit.register(_write_bytes)
from harness.cli import main
sys.argv[0] = "harness"
main()
"""


@dataclass
class Measured:
    seconds: float
    peak_rss_mb: float
    written_mb: float
    kept_mb: float
    ok: bool
    cells_s: float = 0.0  # the sum of the cells' own total_s, from their records


def cells_seconds(results: Path, method: str, before: set[Path]) -> tuple[float, set[Path]]:
    """The summed total_s of the cell records of ``method`` (one name, or several joined by commas)
    written since ``before`` (and all record paths)."""
    paths = {p for p in results.rglob("*.json") if ".locks" not in p.parts}
    total = 0.0
    for path in paths - before:
        record = json.loads(path.read_text())
        if isinstance(record, dict) and record.get("method", {}).get("name") in method.split(","):
            total += record.get("timings", {}).get("total_s", 0.0)
    return total, paths


def folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20 if folder.exists() else 0.0


def run_method(method: str, folder: Path, data_dir: str, source: str | None, hog: bool, slices: str | None,
               device: str | None = None, seeds: str = "0") -> Measured:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", BENCH_IO_FILE=str(folder / "io.txt"))
    cwd = None
    if source:  # the other checkout's harness and plugins shadow the installed ones
        env["PYTHONPATH"] = os.pathsep.join([source, os.path.join(source, "plugins")])
        cwd = source
    args = [sys.executable, "-c", LAUNCHER, "run", "--methods", method, "--seeds", seeds,
            "--data-dir", os.path.abspath(data_dir), "--results", str(folder / "results"),
            "--cache-dir", str(folder / "cache"), "--no-report", "--quiet"] + (["--slices", slices] if slices else [])
    if device and not source:
        args += ["--device", device]
    before = {p for p in (folder / "results").rglob("*.json")} if (folder / "results").exists() else set()
    kept_before = folder_mb(folder / "results") + folder_mb(folder / "cache")
    with busy_loop() if hog else contextlib.nullcontext():
        tick = time.perf_counter()
        child = subprocess.Popen(args, env=env, cwd=cwd)
        _, status, usage = os.wait4(child.pid, 0)  # this child's own peak RSS
        seconds = time.perf_counter() - tick
    io_file = folder / "io.txt"
    written = int(io_file.read_text()) / 2**20 if io_file.exists() else float("nan")
    io_file.unlink(missing_ok=True)
    kept = folder_mb(folder / "results") + folder_mb(folder / "cache") - kept_before
    cells_s, _ = cells_seconds(folder / "results", method, before)
    return Measured(seconds, usage.ru_maxrss / 1024, written, kept, os.waitstatus_to_exitcode(status) == 0, cells_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--methods", default=",".join(BOOK_METHODS),
                        help="comma-separated, in the main job's order (default: the book's six)")
    parser.add_argument("--baseline-src", help="another checkout of the project to run beside this one")
    parser.add_argument("--hog", action="store_true", help="also run everything beside a busy-looping process")
    parser.add_argument("--slices", help="only these slices (default: the dataset's), for a quicker look")
    parser.add_argument("--keep", action="store_true", help="keep the fresh folders (printed)")
    parser.add_argument("--device", help="--device for this checkout's runs (auto, cpu, cuda, ...)")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    parser.add_argument("--together", action="store_true",
                        help="run all --methods in one `harness run` process, as the main job does (one start-up)")
    parser.add_argument("--root", help="folder for the runs' results and caches (default: a fresh temporary one)")
    args = parser.parse_args()

    sides = {"this": None, **({"baseline": args.baseline_src} if args.baseline_src else {})}
    loads = ["idle", "hog"] if args.hog else ["idle"]
    root = Path(args.root) if args.root else Path(tempfile.mkdtemp(prefix="bench-main-job-"))
    root.mkdir(parents=True, exist_ok=True)
    configs = [(side, load) for side in sides for load in loads]
    results: dict[tuple[str, str, str], Measured] = {}
    methods = [args.methods] if args.together else args.methods.split(",")
    try:
        for method in methods:
            for side, load in configs:  # interleaved: each method's configurations run back to back
                folder = root / f"{side}-{load}"
                folder.mkdir(exist_ok=True)
                measured = run_method(method, folder, args.data_dir, sides[side], hog=load == "hog",
                                      slices=args.slices, device=args.device, seeds=args.seeds)
                results[(method, side, load)] = measured
                print(f"{method:15s} {side:8s} {load:4s} {measured.seconds:8.1f} s  "
                      f"({measured.seconds - measured.cells_s:.1f} s outside cells)  {measured.peak_rss_mb:7.0f} MB RSS  "
                      f"{measured.written_mb:8.1f} MB written  {measured.kept_mb:7.1f} MB kept"
                      f"{'' if measured.ok else '  (run failed)'}", file=sys.stderr, flush=True)
    finally:
        if args.keep or args.root:
            print(f"folders kept under {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)

    header = f"| method | {' | '.join(f'{s} {l}: s (outside cells), RSS MB, written MB' for s, l in configs)} |"
    if args.hog:
        header += " | ".join([""] + [f"{s} hog/idle" for s in sides]) + " |"
    print("\n" + header)
    print("|" + "---|" * (header.count("|") - 1))
    totals = {config: 0.0 for config in configs}
    for method in methods:
        cells = []
        for config in configs:
            m = results[(method, *config)]
            totals[config] += m.seconds
            cells.append(f"{m.seconds:.1f} ({m.seconds - m.cells_s:.1f}), {m.peak_rss_mb:.0f}, {m.written_mb:.1f}")
        ratios = [f"{results[(method, s, 'hog')].seconds / results[(method, s, 'idle')].seconds:.2f}"
                  for s in sides] if args.hog else []
        print(f"| {method} | " + " | ".join(cells + ratios) + " |")
    print("| total s | " + " | ".join(f"{totals[c]:.1f}" for c in configs) + " |" * (1 + len(sides) * args.hog))
    if args.baseline_src:
        print("\n" + " ".join(f"{method}: this/baseline {results[(method, 'this', 'idle')].seconds / results[(method, 'baseline', 'idle')].seconds:.2f}"
                              for method in methods))
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} (other processes share the machine)")


if __name__ == "__main__":
    main()
