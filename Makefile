# Quick start: `make demo` then `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
REFERENCE ?= ../shared/reference
DEMO_OUT ?= demo_output

.PHONY: install demo test test-fast bench check-reference lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(PY) setup.py requirements.txt
	$(PY) -m pip install --quiet -e '.[dev,demo]'
	touch $(STAMP)

install: $(STAMP)

# The default model if cached, else the shipped `demo` model (offline; the CLI says so in one line).
demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m audiocraft generate --duration 8 --seed 0 --output $(DEMO_OUT) \
		"calm slow piano and strings in A minor" "energetic fast drums, bass and lead in E major"

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q tests

test-fast: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -x -m "not slow" tests

bench: $(STAMP)
	$(PY) -m benchmarks.run --decode eager,compile --load-baseline --out benchmarks/results.json

check-reference: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) $(REFERENCE)/check_reference.py $(REFERENCE)/cases

lint: $(STAMP)
	$(PY) -m flake8 audiocraft tests

clean:
	rm -rf $(VENV) $(DEMO_OUT) build *.egg-info
