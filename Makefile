# modelops.shutdown — developer entry points. See README.md.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= $(CURDIR)/.venv
export PATH := $(VENV)/bin:$(PATH)
# The collection must be importable as ansible_collections.modelops.shutdown.
COLLECTIONS_DIR := $(CURDIR)/.build/collections
export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS_DIR)

.PHONY: help bootstrap demo test lint sanity units molecule link clean

help:
	@echo "make demo   - bring up a demo fleet and run a shutdown rollout across it"
	@echo "make test   - everything CI runs (lint, sanity, unit tests, molecule scenarios)"

bootstrap:
	@bash tools/bootstrap.sh

link:
	@mkdir -p $(COLLECTIONS_DIR)/ansible_collections/modelops
	@ln -sfn $(CURDIR) $(COLLECTIONS_DIR)/ansible_collections/modelops/shutdown

units: link
	PYTHONPATH=$(COLLECTIONS_DIR) python -m pytest -q --import-mode=importlib -p no:cacheprovider tests/unit

clean:
	rm -rf .build
