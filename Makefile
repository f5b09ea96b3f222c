# The two commands a new machine needs: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo cluster test install lint typecheck bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): pyproject.toml hatch_build.py src/coverwatch/engine/_ckernel.c src/coverwatch/formats/_cjsonl.c | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/coverwatch check examples/yard/site.yaml examples/quay/site.yaml
	$(BIN)/coverwatch demo --site examples/yard/site.yaml --site examples/quay/site.yaml

# One gateway and three workers against the local NATS and PostgreSQL (docs/scale.md);
# `make cluster CLUSTER_ARGS="--nats-nodes 3"` starts three NATS nodes of its own (R3).
cluster: $(STAMP)
	$(BIN)/coverwatch check examples/quay/site.yaml
	$(BIN)/python -m coverwatch.cli.cluster --sites 20 $(CLUSTER_ARGS)

# Four pytest workers on two cores: most tests wait on sockets, subprocesses and browsers.
# --dist loadfile keeps each file on one worker (its module fixtures start once, its tests
# keep their order); every test names its own ports, schemas, bus prefixes and topics.
# PYTHONDONTWRITEBYTECODE is emptied for the tests: where the environment sets it, every
# worker and every `coverwatch` subprocess compiled src/ and tests/ afresh (minutes of CPU).
test: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	PYTHONDONTWRITEBYTECODE= $(BIN)/pytest -q -n 4 --dist loadfile

bench: $(STAMP)
	$(BIN)/python bench/replay.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
