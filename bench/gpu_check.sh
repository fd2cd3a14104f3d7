#!/usr/bin/env bash
# On a GPU machine: run the local-model providers' CUDA tests (diffusers image/video, transformers text) and
# print what the GPU is and how long each test took. The models are tiny and built by the tests (nothing is
# downloaded), so this checks the CUDA path (devices, half precision), not quality.
#
#   bench/gpu_check.sh [extra pytest arguments]
#
# Needs the GPU worker packages with a CUDA build of torch (make install-gpu). Exits non-zero when a test
# fails, or when CUDA is not available (the tests would only be skipped).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}

"$PY" - <<'EOF'
import sys
import torch
if not torch.cuda.is_available():
    sys.exit(f"CUDA is not available to torch {torch.__version__}: the GPU tests would only be skipped")
props = torch.cuda.get_device_properties(0)
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}, "
      f"{props.total_memory / 2**30:.0f} GiB, bf16 {torch.cuda.is_bf16_supported()}")
EOF

export VAR_DIR=${VAR_DIR:-$(mktemp -d)} PLATFORM_TEST_RUN=embedded DATABASE_URL= REDIS_URL= BROKER_URL= CHAIN_RPC_URL=
export REQUIRE_GPU_DEPS=1
started=$(date +%s%N)
# -rs lists skips; a GPU test skipped here is a failure of this check (checked below).
set +e
"$PY" -m pytest -q -p no:cacheprovider -m gpu -rs --durations=0 --durations-min=0 -s \
    generation/tests/test_diffusers_provider.py generation/tests/test_transformers_provider.py "$@" \
    | tee "$VAR_DIR/gpu_check.log"
status=${PIPESTATUS[0]}
set -e
elapsed_ms=$(( ($(date +%s%N) - started) / 1000000 ))
echo "gpu_check: pytest exit status $status, wall time $((elapsed_ms / 1000)).$(printf %03d $((elapsed_ms % 1000))) s"
if grep -q "^SKIPPED" "$VAR_DIR/gpu_check.log"; then
    echo "gpu_check: some GPU tests were skipped" >&2
    exit 1
fi
exit "$status"
