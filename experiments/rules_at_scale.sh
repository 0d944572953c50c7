#!/usr/bin/env bash
# Reproduce docs/RESULTS.md: the paper's seven claims at GPU scale, in one command.
#
#   bash experiments/rules_at_scale.sh            # everything, into ./results
#   OUT=r2 STEPS=3000 SEEDS=8 bash experiments/rules_at_scale.sh
#
# What it runs (each step resumes where it stopped when the script is run again):
#   1. per dataset (digits, shapes): a designed study of the seven claim toggles, the 32-run
#      2^(7-2) resolution IV design (search_spaces/claims.toml), SEEDS paired seeds per run,
#      at SHORT_STEPS and at STEPS training steps (does a verdict change with training length?);
#   2. per dataset: `ganarch ablate` (the paper's DCGAN, one rule flipped at a time, SEEDS
#      paired seeds, STEPS steps) as the one-factor-at-a-time check of the same claims;
#   3. a space-filling (QMC) search of TRIALS trials over the full `dcgan` space on digits, for
#      effects beyond the toggles (spectral norm, learning rate, other blocks and slopes);
#   4. after each designed study and each ablation: the independent judge
#      (experiments/judge_rules.py, tests/score_judge.py) scores every run's generators on the
#      CPU and fits its metrics as ganarch fits its score: does it agree on each claim?
# Outputs under OUT: *.rules.json (rules tables), ablate-*.json, report-*/report.html (tables
# and effect plots), *.judge.json and *.judge.md (ganarch's verdicts beside the judge's; the
# judge's scores are cached in each runs folder's judge-scores.json), environment.txt (device,
# versions, commit), walltimes.txt, figures/effects-SIZE.png and tables.md
# (experiments/results_figures.py). The judge needs the test extra: pip install -e .[test]
# (checked first, so a missing install fails in seconds, not after hours of training).
# The judge and the figures are CPU-side checks: a failure of one is written to
# failures.txt and the run goes on (the GPU training is never stopped by them); a failed
# training or rules step still stops the script, and a rerun resumes it.
set -euo pipefail

OUT=${OUT:-results}
SIZE=${SIZE:-32}
WIDTH=${WIDTH:-32}
STEPS=${STEPS:-2000}
SHORT_STEPS=${SHORT_STEPS:-500}
SEEDS=${SEEDS:-5}
TRIALS=${TRIALS:-300}
DEVICE=${DEVICE:-cuda}
DATASETS=${DATASETS:-digits shapes}

if ! python -c "import sklearn, scipy" 2>/dev/null; then
    echo "error: the judge (experiments/judge_rules.py) needs scikit-learn and SciPy: pip install -e .[test]" >&2
    exit 2
fi
mkdir -p "$OUT"
: > "$OUT/failures.txt"  # this run's failed CPU-side checks (a rerun redoes them)
STORE="$OUT/studies.journal"
{
    echo "started $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "settings: size $SIZE width $WIDTH steps $STEPS/$SHORT_STEPS seeds $SEEDS trials $TRIALS device $DEVICE"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
    python -c "import torch, optuna, ganarch, platform; print('python', platform.python_version(), 'torch', torch.__version__, 'cuda', torch.version.cuda, 'optuna', optuna.__version__, 'ganarch', ganarch.__version__)"
    echo "commit $(git rev-parse HEAD 2>/dev/null || echo unknown)"
} > "$OUT/environment.txt"

timed() {  # timed NAME COMMAND...: run it, append its wall time to walltimes.txt, keep its status
    local name=$1 start rc=0
    shift
    start=$(date +%s)
    "$@" || rc=$?
    echo "$name $(($(date +%s) - start)) s" >> "$OUT/walltimes.txt"
    return "$rc"
}

optional() {  # optional NAME COMMAND...: a CPU-side check; its failure is recorded, not fatal
    local name=$1 rc=0
    shift
    "$@" || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "$name failed (rc $rc) at $(date -u +%Y-%m-%dT%H:%M:%SZ)" >> "$OUT/failures.txt"
        echo "warning: $name failed (rc $rc); recorded in $OUT/failures.txt, going on" >&2
    fi
    return 0
}

rules() {  # rules STUDY: the rules table (JSON) and the HTML report of a study
    ganarch rules "$1" --storage "$STORE" --json > "$OUT/$1.rules.json"
    ganarch report "$1" --storage "$STORE" -o "$OUT/report-$1" --force > /dev/null
}

HERE=$(cd "$(dirname "$0")" && pwd)
judge() {  # judge NAME ARGS...: the judge's verdicts beside ganarch's, as NAME.judge.json/.md
    # (cached per generator, so a rerun only judges what is new; written whole or not at all;
    # the Markdown is rendered from the JSON, so the two always say the same). Run under
    # `optional`, where set -e is off: each step stops the function on failure itself.
    local name=$1
    shift
    python "$HERE/judge_rules.py" --quiet "$@" --json > "$OUT/$name.judge.json.tmp" || return
    mv "$OUT/$name.judge.json.tmp" "$OUT/$name.judge.json" || return
    python "$HERE/judge_rules.py" --from-json "$OUT/$name.judge.json" > "$OUT/$name.judge.md.tmp" || return
    mv "$OUT/$name.judge.md.tmp" "$OUT/$name.judge.md"
}

figures() {  # effect plots (each claim at both training lengths, per dataset) and tables.md
    python "$HERE/results_figures.py" "$OUT" -o "$OUT/figures" > "$OUT/tables.md.tmp" || return
    mv "$OUT/tables.md.tmp" "$OUT/tables.md"
}

for DATA in $DATASETS; do
    for N in "$SHORT_STEPS" "$STEPS"; do
        STUDY="claims-$DATA-$SIZE-$N"
        timed "$STUDY" ganarch search --space claims --sampler fractional32 --data "$DATA" \
            --image-size "$SIZE" --width "$WIDTH" --steps "$N" --seeds "$SEEDS" --trials 32 \
            --study "$STUDY" --storage "$STORE" --out "$OUT/runs/$STUDY" --device "$DEVICE" --quiet
        rules "$STUDY"
        optional "judge-$STUDY" timed "judge-$STUDY" judge "$STUDY" --storage "$STORE" \
            --study "$STUDY" --out "$OUT/runs/$STUDY"
    done
    timed "ablate-$DATA" ganarch ablate --data "$DATA" --image-size "$SIZE" --width "$WIDTH" \
        --steps "$STEPS" --seeds "$SEEDS" --out "$OUT/ablate-$DATA" --device "$DEVICE" --json \
        > "$OUT/ablate-$DATA.json"
    optional "judge-ablate-$DATA" timed "judge-ablate-$DATA" judge "ablate-$DATA" \
        --ablate "$OUT/ablate-$DATA"
done

STUDY="dcgan-qmc-digits-$SIZE"
timed "$STUDY" ganarch search --space dcgan --sampler qmc --pruner none --data digits \
    --image-size "$SIZE" --width "$WIDTH" --steps "$STEPS" --trials "$TRIALS" \
    --study "$STUDY" --storage "$STORE" --out "$OUT/runs/$STUDY" --device "$DEVICE" --quiet
rules "$STUDY"

optional figures figures
echo "finished $(date -u +%Y-%m-%dT%H:%M:%SZ)" >> "$OUT/environment.txt"
echo "done: tables in $OUT/*.json, reports in $OUT/report-*/report.html, judge in" \
    "$OUT/*.judge.md, plots in $OUT/figures and $OUT/tables.md; see docs/RESULTS.md"
if [ -s "$OUT/failures.txt" ]; then
    echo "some CPU-side checks failed (rerun resumes them):" >&2
    cat "$OUT/failures.txt" >&2
fi
