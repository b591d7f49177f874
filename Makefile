# hetnic: everything runs from a local virtual environment built from pyproject.toml.
# Needs only Python 3.11, make and a C++ compiler on the machine.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TEST_WORKERS ?= 2

.PHONY: demo test test-slow lint-imports bench rss-eval-captures verilog regmap clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "hetnic needs Python >= 3.11, found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .[cluster]
	@touch $@

demo: $(STAMP)
	$(BIN)/hetnic demo

# The import layers (pyproject.toml's [tool.importlinter]) are checked first; then the Versa
# ECP5 place and route (single-threaded, several minutes) runs beside the rest of the suite,
# its output kept in build/pnr-test.log and shown at the end. The rest runs on TEST_WORKERS
# pytest-xdist workers, a test file per worker at a time (its module fixtures, such as a
# Verilator build, made once); processes that need the same simulator build wait for one
# build (sim.toolchain.build_lock).
test: $(STAMP) lint-imports
	@mkdir -p build
	@$(BIN)/python -m pytest -q -p no:cacheprovider -m pnr > build/pnr-test.log 2>&1 & pnr=$$!; \
	status=0; $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=20 || status=$$?; \
	echo "--- place and route (build/pnr-test.log) ---"; \
	if wait $$pnr; then tail -n 3 build/pnr-test.log; else status=1; cat build/pnr-test.log; fi; \
	exit $$status

# grimp (under lint-imports) finds a package's modules in the package's own folder, but
# hetnic's subpackages live in top-level folders ([tool.setuptools.package-dir]): it reads
# a view of the installed layout, symlinks in build/import-view, from inside that folder
# (lint-imports puts its working directory first on the import path).
IMPORT_VIEW     := build/import-view
PACKAGE_FOLDERS := $(shell sed -n '/^\[tool.setuptools.package-dir\]/,/^\[/s/^"hetnic\.[a-z_]*" = "\([a-z_]*\)"$$/\1/p' pyproject.toml)

lint-imports: $(STAMP)
	@rm -rf $(IMPORT_VIEW) && mkdir -p $(IMPORT_VIEW)/hetnic
	@ln -s $(CURDIR)/hetnic/* $(IMPORT_VIEW)/hetnic/
	@for folder in $(PACKAGE_FOLDERS); do ln -s $(CURDIR)/$$folder $(IMPORT_VIEW)/hetnic/$$folder; done
	cd $(IMPORT_VIEW) && $(CURDIR)/$(BIN)/lint-imports --no-cache $(CURDIR)/pyproject.toml

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m slow

bench: $(STAMP)
	$(BIN)/hetnic bench rx
	$(BIN)/hetnic bench core
	$(BIN)/hetnic bench hil

# hetnic rss-eval on every capture in DIR (the team's real captures beside the checkout by
# default) at 4, 8 and 16 queues; the table goes into docs/adaptive-rss.md. A missing DIR is
# a one-line error, exit status 2.
DIR ?= ../shared/data/pcap

rss-eval-captures: $(STAMP)
	$(if $(wildcard $(DIR)/.),,$(error DIR=$(DIR): no such folder (make rss-eval-captures DIR=FOLDER)))
	@$(BIN)/hetnic rss-eval --all $(DIR) --doc docs/adaptive-rss.md --out out/rss-eval-captures

verilog: $(STAMP)
	$(BIN)/hetnic verilog

regmap: $(STAMP)
	$(BIN)/hetnic regmap

clean:
	rm -rf $(VENV) .cache build
