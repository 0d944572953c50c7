#!/usr/bin/env bash
# One prepared GPU check for issue 8 (the GPU trial engine), for a session lent a GPU.
# Prepare on a machine with the registries: `bash ../shared/gpu/wheels.sh` (fills .whl/ with
# Optuna, typer and a wheel of the project as it stands; rebuild it after every change), then
# from the project's root on the GPU machine (the `run` tool needs carry: [".whl"]):
#   bash bench/gpu_check.sh        the essentials, about 8 minutes with the install (limits sum
#                                  to 465 s; run it with timeout_s 540): CUDA tests, memory,
#                                  per-step bench, searches, how trials ran, then CPU tests
#   bash bench/gpu_check.sh more   optional, a second command if time is left (about 4 min):
#                                  torch.compile beside the hand graph, bf16 + channels_last
# The `run` tool brings back at most 8 files from $OUT (16 MiB each, 64 MiB in all; see
# /work/.library/device/README.md), so $OUT (or ./gpu-check-out) holds only a few flat files:
# check-PART.log, bench_*.json and, for core, extras-core.tar.gz (journals, search JSON,
# smi CSVs, each trial's metrics.json and spec.json). The bulk (trial runs with their images
# and checkpoints) stays in $WORK/gpu-check-run, the feature cache in $WORK/gpu-check-cache
# (WORK: $GPU_CHECK_WORK, default /tmp/gpu-check-work).
set -uo pipefail
PART=${1:-core}
case "$#:$PART" in  # a mistyped part would cost a machine start and check nothing
  [01]:core | 1:more) ;;
  *) echo "usage: bash bench/gpu_check.sh [core|more]" >&2; exit 2 ;;
esac
OUT=${OUT:-$PWD/gpu-check-out}
WORK=${GPU_CHECK_WORK:-/tmp/gpu-check-work}
# This run's files go to a sub-folder the script makes and marks; only a marked one is ever
# cleared (never the folder GPU_CHECK_WORK names). A rerun on a warm machine starts its
# searches afresh there (an old journal would be resumed, its target already met); the
# feature cache beside it is kept.
RUN=$WORK/gpu-check-run
if [ "$PART" = core ]; then
  if [ -e "$RUN" ] && [ ! -e "$RUN/.made-by-gpu-check" ]; then
    echo "gpu_check: $RUN was not made by this script; move it or set GPU_CHECK_WORK" >&2
    exit 2
  fi
  rm -rf "$RUN" && mkdir -p "$RUN" && touch "$RUN/.made-by-gpu-check" || exit 3
fi
mkdir -p "$OUT" || exit 3
export PYTHONUNBUFFERED=1  # a step killed by its timeout keeps what it printed in the log
LOG="$OUT/check-$PART.log"
exec > >(tee -a "$LOG") 2>&1
TEE=$!
# At exit, close the pipe and give tee up to 5 s to write the last lines to the log (not
# `wait`: a process left holding the pipe would keep tee, and the script, running).
trap 'rc=$?; exec >&- 2>&-; for _ in {1..50}; do kill -0 "$TEE" 2>/dev/null || break; sleep 0.1; done; exit $rc' EXIT
echo "=== gpu_check $PART $(date -u +%H:%M:%S)"

# /work/shared/gpu/README.md step 2, verbatim
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH || exit 3
# Every step must run the code of this checkout: the wheel must hold exactly these sources
# (a wheel built before the last change would measure old code), and imports come from it.
for pair in ganarch:ganarch plugins:ganarch_plugins search_spaces:ganarch_search_spaces; do
  diff -rq -x __pycache__ "${pair%%:*}" "/tmp/site/${pair##*:}" || { echo "stale .whl: rebuild it (wheels.sh)"; exit 3; }
done
(cd /tmp && python3 -c "
import ganarch, ganarch.stepper, ganarch.fused, optuna, torch
assert ganarch.__file__.startswith('/tmp/site/'), ganarch.__file__
assert torch.cuda.is_available(), 'no CUDA'
print('ganarch', ganarch.__version__, 'from', ganarch.__file__, '| torch', torch.__version__, torch.cuda.get_device_name())
") || exit 3

step() {  # step NAME SECONDS COMMAND...: run under a timeout, say how it ended (on stderr,
  local name=$1 limit=$2; shift 2  # so a step's stdout redirected to a file stays clean)
  echo "=== $name ($(date -u +%H:%M:%S), limit ${limit}s): $*" >&2
  local t0=$SECONDS
  timeout "$limit" "$@"
  echo "=== $name: exit $? after $((SECONDS - t0)) s" >&2
}

smi_start() { nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits -lms 500 > "$RUN/smi_$1.csv" & SMI=$!; }
smi_stop() {
  kill "$SMI" 2>/dev/null; wait "$SMI" 2>/dev/null
  python3 - "$RUN/smi_$1.csv" <<'EOF'
import sys
rows = [l.split(",") for l in open(sys.argv[1]) if l.strip()]
util = [float(r[0]) for r in rows]
mem = [float(r[1]) for r in rows]
print(f"GPU busy ({sys.argv[1]}): mean {sum(util) / max(1, len(util)):.1f}% over {len(util)} samples of 0.5 s;"
      f" memory.used max {max(mem, default=0):.0f} MiB")
EOF
}

export GANARCH_CACHE=$WORK/gpu-check-cache
# -P: do not put the checkout first on sys.path (the tests import the installed wheel)
PY="python3 -P"

if [ "$PART" = core ]; then
nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv

# 1. The CUDA tests first and on their own (graph vs eager, replays' draws, fused on CUDA vs
#    fit on CUDA, a diverging fused seed, bf16, both capture fallbacks): -k cuda selects
#    them (and one CPU test); -v names each outcome as it comes, so a timeout keeps them.
#    The files' CPU tests run last (step 5), where a timeout costs nothing else.
step tests-cuda 75 $PY -m pytest tests/test_fused.py tests/test_train.py -k cuda -v -p no:cacheprovider -rs

# 2. One trial's peak memory (what `--workers auto` divides free memory by), measured
#    three ways, beside the estimate `auto` uses (ganarch.search.workers.worker_bytes); it also fills the feature-net cache so no search below pays for it.
step trial-memory 45 $PY -c "
import torch, ganarch
free0, total = torch.cuda.mem_get_info()
spec = ganarch.dcgan_spec(32, 1, width=32, batch_size=64)
r = ganarch.train(spec, 'digits', 200, device='cuda', progress=False)
free1, _ = torch.cuda.mem_get_info()
print('engine:', dict(r.engine))
print('peak allocated by tensors (MiB):', torch.cuda.max_memory_allocated() // 2**20,
      '| reserved by the caching allocator:', torch.cuda.max_memory_reserved() // 2**20,
      '| device memory used by this process incl. context and handles:', (free0 - free1) // 2**20,
      'plus the context before the first call (see nvidia-smi)')
from ganarch.search.workers import worker_bytes
print('--workers auto estimates one worker at (MiB):', worker_bytes(spec, 1) // 2**20)
"

# 3. Per-step benchmarks, side by side in one process, float32 (the default). Each net's
#    result is written to the JSON as soon as it is done.
step bench-fp32 90 $PY bench/bench_train.py --device cuda --nets dcgan,seed --ks 1,4,8,16 \
  --steps 100 --seed-divisor 2 --repeats 3 --json "$OUT/bench_fp32.json"

# 4. Search throughput: a fixed number of 800-step dcgan-space trials on digits, pruning off:
#    one worker one seed; the default (--workers auto); one worker with 4 fused seeds per trial. The feature
#    cache is warm (step 2). Trials/hour = COMPLETE trials over the span from the first
#    trial's start to the last one's end (from the journal, so a killed search still counts).
#    --timeout stops new trials early enough that the search ends and prints its summary.
search() {  # search NAME TRIALS EXTRA-ARGS...
  local name=$1 trials=$2; shift 2
  smi_start "$name"
  step "search-$name" 60 ganarch search --space dcgan --data digits --image-size 32 --steps 800 \
    --pruner none --device cuda --trials "$trials" --timeout 35 --storage "$RUN/$name.journal" \
    --out "$RUN/runs-$name" --quiet --json "$@" > "$RUN/search_$name.json"
  smi_stop "$name"
}
search w1 3 --workers 1
search auto 16
search seeds4 2 --seeds 4 --workers 1  # one worker, as said above (the default is auto)

# how each search went: trials/hour, and how each trial's step ran (graph or eager and why;
# seeds fused or sequential and why) -- the only evidence that capture and fusing happened
# (with a limit: a hang, say on a journal lock, would eat the CPU tests' time)
step summary 30 $PY - "$RUN" <<'EOF'
import collections, json, pathlib, sys
import optuna
from ganarch.search.storage import open_storage
optuna.logging.set_verbosity(optuna.logging.WARNING)
out = pathlib.Path(sys.argv[1])
for name in ("w1", "auto", "seeds4"):
    journal = out / f"{name}.journal"
    if not journal.exists():
        print(name, "no journal"); continue
    storage = open_storage(str(journal))
    for s in optuna.get_all_study_summaries(storage):
        trials = optuna.load_study(study_name=s.study_name, storage=storage).trials
        done = [t for t in trials if t.state.name == "COMPLETE"]
        states = collections.Counter(t.state.name for t in trials)
        if done:  # a WAITING trial (a requeued retry) has no start
            first = min(t.datetime_start for t in trials if t.datetime_start is not None)
            span = (max(t.datetime_complete for t in done) - first).total_seconds()
            per = [(t.datetime_complete - t.datetime_start).total_seconds() for t in done]
            pids = {(t.user_attrs.get("worker") or {}).get("pid") for t in trials}  # what auto chose
            print(f"{name}: {dict(states)}; {len(done)} complete in {span:.1f} s = "
                  f"{len(done) / span * 3600:.0f} trials/hour by {len(pids - {None})} worker process(es); "
                  f"seconds per trial {sorted(round(p, 1) for p in per)}")
        else:
            print(f"{name}: {dict(states)}; none complete")
    seen = collections.Counter()
    for m in (out / f"runs-{name}").glob("*/metrics.json"):
        e = json.loads(m.read_text()).get("engine", {})
        seen[(e.get("step"), e.get("reason"), e.get("seeds"), e.get("seeds_reason"))] += 1
    for k, n in seen.most_common():
        print(f"  {name} {n} trial(s): step {k[0]} ({k[1]}), seeds {k[2]} ({k[3]})")
EOF
# the searches' records in one file for $OUT (not the trials' images and checkpoints)
(cd "$RUN" && find . -type f \( -name '*.journal' -o -name 'search_*.json' \
  -o -name 'smi_*.csv' -o -name metrics.json -o -name spec.json -o -name study.json \) -print0 \
  | tar -czf "$OUT/extras-core.tar.gz" --null -T -) && ls -l "$OUT"

# 5. The same files' CPU tests with CUDA present (the CPU suite runs them too; last, so a
#    slow machine cuts only these).
step tests-cpu 45 $PY -m pytest tests/test_fused.py tests/test_train.py -k "not cuda" -q -p no:cacheprovider -rs
fi

if [ "$PART" = more ]; then
# 5. torch.compile (reduce-overhead) beside the hand-captured graph, in its own step: its
#    compile time is unknown, and each net's figures are written as soon as they exist.
step bench-compile 150 $PY bench/bench_train.py --device cuda --nets dcgan,seed --ks "" \
  --steps 100 --seed-divisor 2 --repeats 3 --compile --json "$OUT/bench_compile.json"
# 6. bf16 + channels_last, for the precision choice (float32 stays unless this is faster).
step bench-bf16 75 $PY bench/bench_train.py --device cuda --nets dcgan,seed --ks 1,8 \
  --steps 100 --seed-divisor 2 --repeats 3 --precision bf16 --channels-last --json "$OUT/bench_bf16.json"
fi
echo "=== done $PART $(date -u +%H:%M:%S)"
