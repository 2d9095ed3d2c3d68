# Two commands set everything up on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PATH := $(abspath $(VENV))/bin:$(PATH)
export DVC_NO_ANALYTICS := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: setup demo test lint format bench bench-gpu clean-demo

setup: $(STAMP) .dvc/plots_template.html

# torch/torchvision come from the package registry, not from a local CPU-only "+cpu" wheel:
# timm imports torchvision, which only loads beside the registry's own torch build.
# constraints.txt pins them with PEP 440 arbitrary equality (===), which excludes "+cpu".
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	$(PY) -c "import timm, torch, torchvision; print('torch', torch.__version__, 'timm', timm.__version__)"
	touch $(STAMP)

# `dvc plots show` / `dvc plots diff` readable offline: a page template with vega inlined
# (from vl-convert-python) instead of DVC's CDN scripts; git-ignored, set in config.local.
.dvc/plots_template.html: $(STAMP)
	$(PY) -m spino_core.report.plots_template $@
	$(VENV)/bin/dvc config --local plots.html_template plots_template.html

# One Prefect API for every stage of the run (a temporary server, stopped at the end), not a
# server per stage; with PREFECT_API_URL set, the stages report there instead.
demo: setup
	spino with-prefect dvc repro
	@$(PY) -m spino_core.report.summary --heads metrics/heads.json \
		--pseudo-report reports/pseudo --student-report reports/student
	@echo "Done: dataset in data/raw, split in data/split, MLflow runs in mlflow.db"
	@echo "Browse runs: $(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db"
	@dvc plots show >/dev/null && echo "DVC plots (offline page): dvc_plots/index.html"

# Two pytest workers: the slow tests mostly wait on DVC/Prefect subprocesses. The slowest
# tests and the slowest test files (tests/conftest.py) are printed so that one that grows
# shows up in CI's log; pyproject.toml's pytest `timeout` stops a test that hangs.
test: setup lint
	$(PY) -m pytest -q -n 2 --durations=15 --durations-per-file=15

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: setup
	$(PY) benchmarks/bench_synth.py
	$(PY) benchmarks/bench_fusion.py

# On a machine with a CUDA device: <= 8 min on one H200, writes benchmarks/results/gpu.{json,md}.
# `$(PY) benchmarks/gpu.py --tiny` is the CPU check of the same code (CI runs it).
bench-gpu: setup
	$(PY) benchmarks/gpu.py
