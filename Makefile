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

# The Versa ECP5 place and route (single-threaded, several minutes) runs beside the rest of
# the suite, its output kept in build/pnr-test.log and shown at the end.
test: $(STAMP)
	@mkdir -p build
	@$(BIN)/python -m pytest -q -p no:cacheprovider -m pnr > build/pnr-test.log 2>&1 & pnr=$$!; \
	status=0; $(BIN)/python -m pytest -q || status=$$?; \
	echo "--- place and route (build/pnr-test.log) ---"; \
	if wait $$pnr; then tail -n 3 build/pnr-test.log; else status=1; cat build/pnr-test.log; fi; \
	exit $$status

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
