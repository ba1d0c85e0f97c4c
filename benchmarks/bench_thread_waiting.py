"""How OpenMP's waiting policy changes fine-tuning speed, alone and beside a busy-looping process.

Each setting runs in a fresh process, because libgomp reads its settings once, when torch loads.
Two workloads:

- ``steps`` (the default): MiniLM (the default preset's model, batch 4, 64 tokens, the default
  precision) trains for a fixed number of optimizer steps; the table gives seconds per step.
- ``cell``: one whole finetune cell, ``harness run --methods finetune --slices 8 --seeds 0`` into
  a fresh folder (``--data-dir``), training and its evaluations on valid; the table gives the
  cell's seconds from its record. The plugins' own default applies where a setting sets nothing.

Settings are interleaved and repeated so that drift in the machine's load hits them alike; the
table shows the medians and the ratios to the first setting given. ``spin`` is libgomp's default
(threads spin up to 300,000 times before sleeping), ``active`` spins without limit, ``passive``
sleeps at once.

    python benchmarks/bench_thread_waiting.py [--steps 30] [--repeats 2] [--no-hog]
    python benchmarks/bench_thread_waiting.py --workload cell --data-dir ../shared/data --repeats 1 \
        --settings "passive,spin,spin 100k,active"
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.testing import busy_loop
from harness.training import cpu_model

# name -> environment added to the child
SETTINGS = {
    "spin": {"GOMP_SPINCOUNT": "300000"},  # libgomp's default, stated so that no plugin default replaces it
    "active": {"OMP_WAIT_POLICY": "ACTIVE"},
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "spin 10k": {"GOMP_SPINCOUNT": "10000"},
    "spin 100k": {"GOMP_SPINCOUNT": "100000"},
    # one torch thread: what "threads = cores actually free" gives beside one busy process
    "1 thread": {"GOMP_SPINCOUNT": "10000", "OMP_NUM_THREADS": "1"},
    "passive 1t": {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"},
}

CHILD = r"""
import sys, time, torch
from harness.training import choose_precision
from harness_finetune.runtime import local_model_folder
from transformers import AutoModelForSequenceClassification
steps = int(sys.argv[1])
torch.manual_seed(0)
model = AutoModelForSequenceClassification.from_pretrained(local_model_folder("sentence-transformers/all-MiniLM-L6-v2"),
    num_labels=20, problem_type="multi_label_classification")
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
bf16 = choose_precision("auto", "cpu") == "bf16"
ids = torch.randint(1000, 20000, (4, 64))
labels = (torch.rand(4, 20) > 0.8).float()
def step():
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).loss
    loss.backward(); optimizer.step(); optimizer.zero_grad()
for _ in range(3):
    step()
tick = time.perf_counter()
for _ in range(steps):
    step()
print((time.perf_counter() - tick) / steps)
"""


def seconds_per_step(extra_env: dict[str, str], steps: int) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
    env.update(extra_env, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
    out = subprocess.run([sys.executable, "-c", CHILD, str(steps)], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def cell_seconds(extra_env: dict[str, str], data_dir: str) -> float:
    """Seconds of one finetune cell (slice 8, seed 0) in a fresh folder, from its record."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
    env.update(extra_env, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run([sys.executable, "-m", "harness", "run", "--methods", "finetune", "--slices", "8", "--seeds", "0",
                        "--data-dir", os.path.abspath(data_dir), "--results", os.path.join(folder, "results"),
                        "--cache-dir", os.path.join(folder, "cache"), "--no-report", "--quiet"],
                       env=env, check=True, capture_output=True)
        records = [json.loads(p.read_text()) for p in Path(folder, "results").rglob("*.json") if ".locks" not in p.parts]
    return sum(r["timings"]["total_s"] for r in records if isinstance(r, dict) and r.get("method", {}).get("name") == "finetune")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=("steps", "cell"), default="steps")
    parser.add_argument("--data-dir", default="../shared/data", help="the data mirror (workload cell)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-hog", action="store_true", help="measure the idle case only")
    parser.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated names of SETTINGS")
    args = parser.parse_args()
    names = args.settings.split(",")
    loads = ["idle"] if args.no_hog else ["idle", "hog"]
    times: dict[tuple[str, str], list[float]] = {(n, l): [] for n in names for l in loads}
    unit = "s/step" if args.workload == "steps" else "s/cell"
    for _ in range(args.repeats):
        for load in loads:
            for name in names:
                with busy_loop() if load == "hog" else contextlib.nullcontext():
                    times[(name, load)].append(
                        seconds_per_step(SETTINGS[name], args.steps) if args.workload == "steps"
                        else cell_seconds(SETTINGS[name], args.data_dir))
                print(f"{name:10s} {load:5s} {times[(name, load)][-1]:.3f} {unit}", file=sys.stderr, flush=True)
    base = {load: statistics.median(times[(names[0], load)]) for load in loads}
    print(f"\n{'setting':10s} " + " ".join(f"{load + ' ' + unit:>13s} {'vs ' + names[0]:>9s}" for load in loads)
          + ("   hog/idle" if "hog" in loads else ""))
    for name in names:
        med = {load: statistics.median(times[(name, load)]) for load in loads}
        row = " ".join(f"{med[load]:13.3f} {med[load] / base[load]:9.2f}" for load in loads)
        ratio = f"   {med['hog'] / med['idle']:9.2f}" if "hog" in loads else ""
        print(f"{name:10s} {row}{ratio}")
    print(f"\nCPU {cpu_model()}, {os.cpu_count()} cores")
    print(f"{time.strftime('%H:%M')} load average {os.getloadavg()[0]:.1f} (other processes share the machine)")


if __name__ == "__main__":
    main()
