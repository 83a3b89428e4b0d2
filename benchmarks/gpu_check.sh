#!/usr/bin/env bash
# The prepared GPU check: the test suite on a CUDA machine, then the GPU benchmark, with
# everything written under $OUT (the device tool's output folder; ./gpu-out elsewhere).
#
# The GPU image lacks some of the project's packages: download them here first as cp312
# manylinux wheels into an ignored .whl/ folder and carry it (see the device tool's README):
#   duckdb open_clip_torch ftfy wcwidth imagenet-x easyrobust (and their missing needs)
# then run:  bash benchmarks/gpu_check.sh        (about 9 minutes on one H200)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$OUT/gpu.txt" 2>&1
python3 -c "import torch; print(torch.__version__, torch.version.cuda)" >>"$OUT/gpu.txt" 2>&1
# The suite (no browser; the Streamlit page tests need streamlit, absent from the GPU image)
timeout 330 python3 -m pytest -q -n 12 -m "not browser" -p no:cacheprovider \
  --ignore tests/test_dashboard.py --ignore tests/test_live_page.py \
  --junitxml "$OUT/junit.xml" 2>&1 | tail -60 >"$OUT/suite.txt"
# The CUDA checks alone, verbose (also part of the suite above)
timeout 120 python3 -m pytest -q -rs tests/test_gpu_path.py tests/test_views.py -k "cuda or gpu" \
  2>&1 | tail -30 >"$OUT/cuda_tests.txt"
timeout 420 python3 benchmarks/bench_gpu.py --json "$OUT/bench_gpu.json" 2>&1 | tail -40 >"$OUT/bench_gpu.txt"
timeout 60 python3 benchmarks/bench_scoring.py --device cuda --json "$OUT/bench_scoring.json" \
  >/dev/null 2>&1
# --profile on the GPU (random weights: the paper's two timm architectures), fp32 and bf16
timeout 120 python3 -m precompute --profile --random-weights --device cuda --store "$OUT/profile.duckdb" \
  --model timm:deit3_base_patch16_224.fb_in22k_ft_in1k,timm:convnext_base.fb_in22k_ft_in1k \
  >"$OUT/profile.txt" 2>&1
timeout 120 python3 -m precompute --profile --random-weights --device cuda --precision bf16 \
  --store "$OUT/profile.duckdb" --model timm:deit3_base_patch16_224.fb_in22k_ft_in1k \
  >>"$OUT/profile.txt" 2>&1
ls -la "$OUT"
