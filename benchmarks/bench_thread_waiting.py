"""How OpenMP's waiting policy changes fine-tuning speed, alone and beside a busy-looping process.

Each setting trains MiniLM (the default preset's model, batch 4, 64 tokens, the default
precision) for a fixed number of optimizer steps in a fresh process, because libgomp reads its
settings once, when torch loads. Settings are interleaved and repeated so that drift in the
machine's load hits them alike; the table shows the median seconds per step and the ratios to
today's setting (``spin``: libgomp's default, threads spin up to 300,000 times before sleeping).

    python benchmarks/bench_thread_waiting.py [--steps 30] [--repeats 2] [--no-hog]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

# name -> environment added to the child; "spin" is today's (nothing set)
SETTINGS = {
    "spin": {},
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


def start_hog() -> subprocess.Popen:
    """A process that busy-loops on one core, as another program on a user's machine would."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-hog", action="store_true", help="measure the idle case only")
    parser.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated names of SETTINGS")
    args = parser.parse_args()
    names = args.settings.split(",")
    loads = ["idle"] if args.no_hog else ["idle", "hog"]
    times: dict[tuple[str, str], list[float]] = {(n, l): [] for n in names for l in loads}
    for _ in range(args.repeats):
        for load in loads:
            for name in names:
                hog = start_hog() if load == "hog" else None
                try:
                    times[(name, load)].append(seconds_per_step(SETTINGS[name], args.steps))
                finally:
                    if hog is not None:
                        hog.kill()
                        hog.wait()
                print(f"{name:10s} {load:5s} {times[(name, load)][-1]:.3f} s/step", file=sys.stderr, flush=True)
    base = {load: statistics.median(times[(names[0], load)]) for load in loads}
    print(f"\n{'setting':10s} " + " ".join(f"{load + ' s/step':>13s} {'vs ' + names[0]:>9s}" for load in loads)
          + ("   hog/idle" if "hog" in loads else ""))
    for name in names:
        med = {load: statistics.median(times[(name, load)]) for load in loads}
        row = " ".join(f"{med[load]:13.3f} {med[load] / base[load]:9.2f}" for load in loads)
        ratio = f"   {med['hog'] / med['idle']:9.2f}" if "hog" in loads else ""
        print(f"{name:10s} {row}{ratio}")
    print(f"\n{time.strftime('%H:%M')} load average {os.getloadavg()[0]:.1f} (other processes share the machine)")


if __name__ == "__main__":
    main()
