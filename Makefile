# Two commands for a fresh machine: `make demo` and `make test`.
# Both create .venv with the pinned requirements when missing (pip only), then run.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
RUN := source scripts/env.sh &&

.PHONY: demo test install bench mutation clean-venv help

help:
	@echo "make demo   - set up .venv and run the demo on the shared sample pairs"
	@echo "make test   - set up .venv and run the test suite"

$(STAMP): requirements.txt requirements-ros.txt requirements-tools.txt requirements-build.txt setup.py scripts/install.sh \
		scripts/build_vision_msgs.sh $(wildcard msg/*.msg)
	bash scripts/install.sh
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(RUN) bash scripts/demo.sh

test: $(STAMP)
	$(RUN) $(VENV)/bin/python -m pytest $(PYTEST_ARGS)

mutation: $(STAMP)
	bash scripts/mutation.sh $(AREA)

bench: $(STAMP)
	$(RUN) $(VENV)/bin/ivif bench all

clean-venv:
	rm -rf $(VENV)
