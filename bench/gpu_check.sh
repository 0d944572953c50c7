#!/usr/bin/env bash
# One prepared GPU check for issue 8 (the GPU trial engine), for a session lent a GPU.
# Prepare on a machine with the registries: `bash ../shared/gpu/wheels.sh` (fills .whl/ with
# Optuna, typer and a wheel of the project as it stands), then run from the project's root on
# the GPU machine:   bash bench/gpu_check.sh        (about 9 minutes; every step has a timeout)
# Everything goes to $OUT (or ./gpu-check-out): check.log, bench_*.json, smi_*.csv, tests.
set -uo pipefail
OUT=${OUT:-$PWD/gpu-check-out}
mkdir -p "$OUT"
LOG="$OUT/check.log"
exec > >(tee -a "$LOG") 2>&1

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH || exit 3
python3 -c "import ganarch, optuna, torch; assert torch.cuda.is_available(); print('ganarch', ganarch.__version__, 'torch', torch.__version__, torch.cuda.get_device_name())" || exit 3

step() {  # step NAME SECONDS COMMAND...: run under a timeout, say how it ended (on stderr)
  local name=$1 limit=$2; shift 2
  echo "=== $name ($(date -u +%H:%M:%S), limit ${limit}s): $*" >&2
  local t0=$SECONDS
  timeout "$limit" "$@"
  echo "=== $name: exit $? after $((SECONDS - t0)) s" >&2
}

smi_start() { nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits -lms 500 > "$OUT/smi_$1.csv" & SMI=$!; }
smi_stop() {
  kill "$SMI" 2>/dev/null; wait "$SMI" 2>/dev/null
  python3 - "$OUT/smi_$1.csv" <<'EOF'
import sys
rows = [l.split(",") for l in open(sys.argv[1]) if l.strip()]
util = [float(r[0]) for r in rows]
print(f"GPU busy ({sys.argv[1]}): mean {sum(util) / max(1, len(util)):.1f}% over {len(util)} samples of 0.5 s")
EOF
}

nvidia-smi
export GANARCH_CACHE=$OUT/cache

# Limits add up to about 9 minutes; the most important checks come first.
# 1. The CUDA tests: graph capture vs eager, fused seeds on CUDA vs CPU, bf16 (skipped
#    elsewhere), then the trainer's own tests with CUDA present.
step tests-cuda 150 python3 -m pytest tests/test_fused.py tests/test_train.py -q -p no:cacheprovider -rs -x

# 2. Per-step benchmarks, side by side in one process: float32 (the default), with
#    torch.compile beside the hand-captured graph.
step bench-fp32 150 python3 bench/bench_train.py --device cuda --nets dcgan,seed --ks 1,4,8,16 \
  --steps 100 --repeats 3 --compile --json "$OUT/bench_fp32.json"

# 3. Search throughput: a fixed 800-step dcgan-space study on digits, pruning off, 60 s of
#    trials each: one worker one seed; four workers; one worker with 4 fused seeds per trial.
#    GPU utilisation sampled every 0.5 s. Trials finished = the journal's COMPLETE count.
search() {  # search NAME EXTRA-ARGS...
  local name=$1; shift
  smi_start "$name"
  step "search-$name" 100 ganarch search --space dcgan --data digits --image-size 32 --steps 800 \
    --pruner none --device cuda --timeout 60 --trials 100000 --storage "$OUT/$name.journal" \
    --out "$OUT/runs-$name" --quiet --json "$@" > "$OUT/search_$name.json"
  smi_stop "$name"
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[2], d.get('run_counts'))" \
    "$OUT/search_$name.json" "$name" || true
}
search w1
search w4 --workers 4
search seeds4 --seeds 4

# 4. One trial's peak GPU memory (what a `--workers auto` would divide free memory by).
step trial-memory 60 python3 -c "
import torch, ganarch
spec = ganarch.dcgan_spec(32, 1, width=32, batch_size=64)
ganarch.train(spec, 'digits', 200, device='cuda', progress=False)
print('peak GPU memory of one 32x32 width-32 trial (MiB):', torch.cuda.max_memory_allocated() // 2**20)
"

# 5. bf16 + channels_last, for the precision choice (float32 stays unless this is faster).
step bench-bf16 90 python3 bench/bench_train.py --device cuda --nets dcgan,seed --ks 1,8 \
  --steps 100 --repeats 3 --precision bf16 --channels-last --json "$OUT/bench_bf16.json"

# how each trial's step ran (graph or eager and why; seeds fused or sequential and why)
python3 - "$OUT" <<'EOF'
import collections, json, pathlib, sys
for d in ("runs-w1", "runs-w4", "runs-seeds4"):
    seen = collections.Counter()
    for m in pathlib.Path(sys.argv[1], d).glob("*/metrics.json"):
        e = json.loads(m.read_text()).get("engine", {})
        seen[(e.get("step"), e.get("reason"), e.get("seeds"), e.get("seeds_reason"))] += 1
    for k, n in seen.most_common():
        print(d, n, k)
EOF
echo "=== done $(date -u +%H:%M:%S)"
