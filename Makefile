# The README's two commands: `make run` and `make test`. Both create .venv and install the
# project when it is missing or when pyproject.toml changed, so a fresh clone needs nothing else.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= examples/phishing.toml
STORE ?= sqlite:///.data/onlearn.db
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test test-long e2e-label-studio lint bench bench-active bench-weights bench-recover bench-selftrain bench-drift bench-trim bench-purge bench-storage bench-stall bench-models bench-saturation soak install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	mkdir -p .data
	$(BIN)/onlearn serve --config $(CONFIG) --store $(STORE) --host $(HOST) --port $(PORT)

# Two processes, a test file on each at a time; the load and soak runs (marked `long`) are left
# to `make test-long`.
test: $(STAMP)
	./scripts/ensure-system-deps
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not long"

test-long: $(STAMP)
	./scripts/ensure-system-deps
	$(BIN)/python -m pytest -q -m long

lint: $(STAMP)
	$(BIN)/ruff check onlearn serving tests benchmarks
	$(BIN)/ruff format --check onlearn serving tests benchmarks

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

bench-active: $(STAMP)
	$(BIN)/python -m pip install --quiet matplotlib
	$(BIN)/python -m benchmarks.active_learning

bench-drift: $(STAMP)
	$(BIN)/python -m benchmarks.drift

# Accuracy with and without importance weights (10 seeds, about two minutes).
bench-weights: $(STAMP)
	$(BIN)/python -m benchmarks.importance_weights

# The Hoeffding tree with and without recover = true, every label and a 10 % budget (about 3 min).
bench-recover: $(STAMP)
	$(BIN)/python -m benchmarks.recovering_tree

# Self-training under the budget, against the default strategy alone (about three minutes).
bench-selftrain: $(STAMP)
	$(BIN)/python -m benchmarks.self_training

# SQLite trim of 900k label events against the old single DELETE (about a minute).
bench-trim: $(STAMP)
	$(BIN)/python -m benchmarks.trim --write

# SQLite purges of 500k expired prediction records and 200k finished queue items (about a minute).
bench-purge: $(STAMP)
	$(BIN)/python -m benchmarks.purge --write

# Bytes per label event and prediction record (SQLite, Redis) and encoding cost, before and
# after the compact encoding (about a minute).
bench-storage: $(STAMP)
	$(BIN)/python -m benchmarks.storage --write

# Predict latency while the same model learns batches: hand-off lock, plain Lock, quiet (~1 min);
# then over HTTP, another model's predict and feedback while a forest learns (~1.5 min).
bench-stall: $(STAMP)
	$(BIN)/python -m benchmarks.learn_stall --write

# onlearn serve with 1, 100, 300, 1000 models on SQLite and 1, 300 on Redis (2 replicas):
# start-up, threads, idle CPU, RSS, predict round robin (~5 min). Not part of `make bench`.
bench-models: $(STAMP)
	$(BIN)/python -m benchmarks.many_models --wait-quiet 120

# Batch predict past saturation with a small record buffer: every 200 has its record, the rest
# are 503s (back-pressure), nothing dropped (~15 s); exits 1 otherwise.
bench-saturation: $(STAMP)
	$(BIN)/python -m benchmarks.saturation

# Half of the measured capacity for SOAK_DURATION seconds; exits 1 when a verdict fails.
SOAK_DURATION ?= 600
SOAK_ARGS ?=
soak: $(STAMP)
	$(BIN)/python -m benchmarks.soak --duration $(SOAK_DURATION) $(SOAK_ARGS)

clean:
	rm -rf $(VENV) .data .pytest_cache .ruff_cache

# onlearn as the ML backend of a real Label Studio (PyPI), end to end, with screenshots for
# docs/label-studio.md; not part of `make test` (Label Studio starts in a minute or two). Label
# Studio gets a venv of its own: its many pins stay out of the project's.
LS_PYTHON ?= $(PYTHON)
LS_VENV := .venv-label-studio
$(LS_VENV)/.installed:
	test -x $(LS_VENV)/bin/python || $(LS_PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/python -m pip install --quiet --upgrade pip
	# sentry-sdk 3 refuses an option Label Studio 1.23 passes it
	$(LS_VENV)/bin/python -m pip install --quiet 'label-studio>=1.23,<1.24' 'sentry-sdk>=2.16,<3'
	touch $(LS_VENV)/.installed

e2e-label-studio: $(STAMP) $(LS_VENV)/.installed
	./scripts/ensure-system-deps
	$(BIN)/python scripts/e2e_label_studio.py --label-studio-venv $(LS_VENV) \
		--screenshots docs/label-studio --summary docs/label-studio/last-run.md
