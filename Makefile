# Quick start: `make demo` then `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
REFERENCE ?= ../shared/reference
DEMO_OUT ?= demo_output

.PHONY: install demo test test-fast test-integ bench check-reference lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(PY) setup.py requirements.txt
	$(PY) -m pip install --quiet -e '.[dev,demo]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m audiocraft generate --model debug \
		--duration 2 --output $(DEMO_OUT) "warm lo-fi piano with soft drums"

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q tests

test-fast: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -x -m "not slow" tests

# AudioCraft's `tests_integ`, command for command, on CPU (the MAGNeT stage alone takes over ten
# minutes on two cores; `make test` runs the same recipe with a smaller MAGNeT stage:
# tests/test_train_integration.py). 5091833e is the signature of the compression XP.
INTEG_DIR ?= /tmp/audiocraft_integ_$(USER)
INTEG = AUDIOCRAFT_DORA_DIR=$(INTEG_DIR) HF_HUB_OFFLINE=1 $(PY) -m dora -v run --clear device=cpu \
	dataset.num_workers=0 optim.epochs=1 dataset.train.num_samples=10 dataset.valid.num_samples=10 \
	dataset.evaluate.num_samples=10 dataset.generate.num_samples=2 sample_rate=16000 logging.level=DEBUG
INTEG_LM = dset=audio/example compression_model_checkpoint=//sig/5091833e \
	transformer_lm.n_q=2 transformer_lm.card=48 transformer_lm.dim=16 checkpoint.save_last=false

test-integ: $(STAMP)
	$(INTEG) solver=compression/debug rvq.n_q=2 rvq.bins=48 checkpoint.save_last=true
	$(INTEG) solver=musicgen/debug $(INTEG_LM)
	$(INTEG) solver=audiogen/debug $(INTEG_LM)
	$(INTEG) solver=magnet/magnet_32khz $(INTEG_LM)

bench: $(STAMP)
	$(PY) -m benchmarks.run --decode eager,compile --load-baseline --out benchmarks/results.json

check-reference: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) $(REFERENCE)/check_reference.py $(REFERENCE)/cases

lint: $(STAMP)
	$(PY) -m flake8 audiocraft tests

clean:
	rm -rf $(VENV) $(DEMO_OUT) build *.egg-info
