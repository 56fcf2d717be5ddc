# recovery: find, recompute and correct missing or wrong results of Kafka event pipelines.
# `make help` lists the targets. Everything runs from the project's own venv (.venv) and Kafka jars (kafka/lib).

.DEFAULT_GOAL := help
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
RECOVERY := $(BIN)/recovery
SPEC ?= pipeline.toml
PYTEST_ARGS ?=

.PHONY: help chromium setup kafka-up kafka-down kafka-status kafka-shell test unit lint demo lab report reconcile bench soak clean

help: ## show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV)/.installed: pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c requirements.lock -e '.[test]'
	@touch $@

kafka/lib/.installed: kafka/pom.xml
	mvn -q -B -f kafka/pom.xml dependency:copy-dependencies -DoutputDirectory=lib -DincludeScope=runtime
	@touch $@

chromium: ## install Debian's headless Chromium (report rendering tests) if missing
	@command -v chromium >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  echo "installing chromium (Debian package) for the report rendering tests"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

setup: $(VENV)/.installed kafka/lib/.installed chromium ## venv with locked packages, Kafka jars, Chromium (idempotent)

kafka-up: setup ## start the local Kafka broker (KRaft, 127.0.0.1, free port); SASL=1 adds a SCRAM-SHA-512 listener and ACLs
	@if [ -n "$$KAFKA_BOOTSTRAP_SERVERS" ]; then echo "KAFKA_BOOTSTRAP_SERVERS is set: using $$KAFKA_BOOTSTRAP_SERVERS, starting nothing"; else $(RECOVERY) kafka up $(if $(SASL),--sasl); fi

kafka-down: ## stop the local Kafka broker
	@if [ -x $(RECOVERY) ]; then $(RECOVERY) kafka down; fi

kafka-status: setup ## broker reachable? topics, partitions, end offsets
	@$(RECOVERY) kafka status

kafka-shell: setup ## a shell with Kafka's own CLI tools on PATH (kafka-topics.sh, kafka-console-consumer.sh, ...)
	@echo "Kafka tools on PATH: $$(ls kafka/bin | tr '\n' ' ')"
	@PATH="$(CURDIR)/kafka/bin:$$PATH" KAFKA_BOOTSTRAP_SERVERS="$${KAFKA_BOOTSTRAP_SERVERS:-$$(cat .kafka-local/bootstrap 2>/dev/null)}" $${SHELL:-bash}

test: setup ## run every test: unit, integration (real broker, started and stopped here), notebooks
	$(BIN)/pytest $(PYTEST_ARGS)

unit: setup ## fast unit tests only (no broker)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

lint: setup ## ruff check, ruff format --check, mypy on the package
	$(BIN)/ruff check recovery tests bench
	$(BIN)/ruff format --check recovery tests bench
	$(BIN)/mypy recovery

demo: kafka-up ## the main job end to end on the local broker (simulated incident, recovery, reports)
	$(RECOVERY) kafka status

lab: setup ## open JupyterLab on notebooks/
	$(BIN)/jupyter lab notebooks/

clean: kafka-down ## stop the broker, delete its data, reports and caches (keeps the venv and jars)
	rm -rf .kafka-local .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find reports -mindepth 1 ! -name .gitkeep ! -name README.md -exec rm -rf {} +
