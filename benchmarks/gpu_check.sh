#!/usr/bin/env bash
# One prepared GPU check (about 5 minutes on an H100, 8 at most): the CUDA tests, then
# benchmarks/embed_throughput.py at 1k, 10k and 100k texts on CUDA vs sentence-transformers.
#
#   benchmarks/gpu_check.sh RESULTS_DIR
#
# Needs the project installed with its test extra (pip install -e '.[test]') and a CUDA torch.
# Writes RESULTS_DIR/{env.txt, tests.txt, throughput_N.txt, throughput_N.json, summary.txt}.
set -uo pipefail
out=${1:?usage: benchmarks/gpu_check.sh RESULTS_DIR}
mkdir -p "$out"
cd "$(dirname "$0")/.."
py=${PYTHON:-python}
export SGPT_CACHE_DIR=${SGPT_CACHE_DIR:-$out/cache}
export TOKENIZERS_PARALLELISM=true
# real STS-B sentences where shared/ is beside the checkout (or STS_DIR), generated ones otherwise
sts=${STS_DIR:-../shared/data/stsbenchmark}

{ date -u; nvidia-smi || true; $py -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda,
  'gpus', torch.cuda.device_count(), [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())])"; } \
  > "$out/env.txt" 2>&1
$py -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || { echo "no CUDA GPU" | tee "$out/summary.txt"; exit 1; }

# correctness first: the CUDA pool against the CPU reference (fp32 and bf16), plus the precision suite
timeout 150 $py -m pytest -q tests/test_precision.py > "$out/tests.txt" 2>&1
echo "tests: exit $? ($(tail -1 "$out/tests.txt"))" | tee "$out/summary.txt"

# the random 125M-shape checkpoint, written once (not timed)
$py -c "import sys; sys.path.insert(0, 'benchmarks'); from embed_throughput import ensure_model; \
from sgpt_qdrant.runtime.cache import cache_root; ensure_model(cache_root() / 'bench' / 'random-125m')" \
  >> "$out/summary.txt" 2>&1 || true

run() {  # n, modes, time limit
  timeout "$3" $py benchmarks/embed_throughput.py --device cuda --n "$1" --modes "$2" --sts-dir "$sts" \
    --json "$out/throughput_$1.json" > "$out/throughput_$1.txt" 2>&1
  echo "n=$1 modes=$2: exit $?" >> "$out/summary.txt"
  sed -n '/^implementation/,$p' "$out/throughput_$1.txt" >> "$out/summary.txt"
}
run 1000 bf16,fp16,fp32 240  # the first run on a fresh machine pays cold imports and CUDA init
run 10000 bf16,fp32 110
run 100000 bf16 180
cat "$out/summary.txt"
