# modelops.shutdown — developer entry points. See README.md.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= $(CURDIR)/.venv
export PATH := $(VENV)/bin:$(PATH)
# The collection must be importable as ansible_collections.modelops.shutdown.
COLLECTIONS_DIR := $(CURDIR)/.build/collections
export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS_DIR)

.PHONY: help bootstrap demo test lint sanity units molecule link stage clean

help:
	@echo "make demo   - bring up a demo fleet and run a shutdown rollout across it"
	@echo "make test   - everything CI runs (lint, sanity, unit tests, molecule scenarios)"

# Scenarios run in this order; each is independent (own containers, network and ports). They publish their
# ports on 127.0.0.1:280xx, below Linux's ephemeral range (32768-60999): no client socket of a busy machine holds one.
MOLECULE_SCENARIOS ?= default drain stop_verify policy rollout ramp fault_sigterm fault_unreachable fault_budget fault_controller fault_lb fault_deadline retire

bootstrap:
	@bash tools/bootstrap.sh

demo: bootstrap link
	@bash tools/demo.sh

test: bootstrap
	@bash tools/run-tests.sh

lint: link
	ansible-lint

molecule: link
	@set -e; for s in $(MOLECULE_SCENARIOS); do \
	  echo "== molecule scenario $$s"; start=$$(date +%s); \
	  molecule test -s $$s; \
	  echo "== molecule scenario $$s passed in $$(( $$(date +%s) - start )) s"; \
	done

link:
	@mkdir -p $(COLLECTIONS_DIR)/ansible_collections/modelops
	@ln -sfn $(CURDIR) $(COLLECTIONS_DIR)/ansible_collections/modelops/shutdown

units: link
	PYTHONPATH=$(COLLECTIONS_DIR) python -m pytest -q --import-mode=importlib -p no:cacheprovider tests/unit

clean:
	rm -rf .build

# ansible-test needs a real tree at .../ansible_collections/<ns>/<name>, outside any git work tree
# files git knows (tracked, and new files it does not ignore).
STAGE := /tmp/modelops-stage-$(shell printf %s "$(CURDIR)" | md5sum | cut -c1-8)/ansible_collections/modelops/shutdown
stage:
	@rm -rf $(STAGE) && mkdir -p $(STAGE)
	@git ls-files -z -co --exclude-standard | xargs -0 -I{} sh -c 'test -e "{}" && printf "%s\0" "{}"' | tar --null -T - -cf - | tar -xf - -C $(STAGE)

# Modules run on the target's Python, 3.8 and later: where a Python 3.8 is installed, compile and
# import them with it too (ansible-test needs its real path first in PATH, not a pyenv shim).
PY38 := $(firstword $(wildcard /usr/bin/python3.8 /usr/local/bin/python3.8 $(HOME)/.pyenv/versions/3.8*/bin/python3.8))

sanity: stage
	cd $(STAGE) && ansible-test sanity --color no --python 3.11 $(SANITY_ARGS)
	@if [ -z "$(SANITY_ARGS)" ] && [ -n "$(PY38)" ]; then \
	  echo "== target Python 3.8 ($(PY38)): compile and import"; \
	  cd $(STAGE) && PATH=$(dir $(PY38)):$$PATH ansible-test sanity --color no --python 3.8 --test compile --test import; \
	elif [ -z "$(SANITY_ARGS)" ]; then echo "== no Python 3.8 here: target-Python 3.8 compile and import skipped"; fi
