# hetnic: everything runs from a local virtual environment built from pyproject.toml.
# Needs only Python 3.11, make and a C++ compiler on the machine.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-slow bench verilog regmap clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "hetnic needs Python >= 3.11, found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

demo: $(STAMP)
	$(BIN)/hetnic demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

bench: $(STAMP)
	$(BIN)/hetnic bench rx
	$(BIN)/hetnic bench core
	$(BIN)/hetnic bench hil

verilog: $(STAMP)
	$(BIN)/hetnic verilog

regmap: $(STAMP)
	$(BIN)/hetnic regmap

clean:
	rm -rf $(VENV) .cache build
