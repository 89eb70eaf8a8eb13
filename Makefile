# hwloop — the two commands a fresh machine needs:  make demo   |   make test
PY      ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.hwloop-installed
PIP     := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: demo test test-fast bench venv clean

venv: $(STAMP)

# The venv is (re)built when missing or when the dependency list changes.
$(STAMP): pyproject.toml Makefile
	@command -v $(PY) >/dev/null 2>&1 || { echo "need $(PY) (Python 3.11)"; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install -e '.[test,lava]'
	# lava-nc 0.10.0 declares Python <3.11; it runs on 3.11 with the import shim in
	# backends/loihi/lava_compat.py. Installed without its own resolve (its deps are pinned above).
	$(PIP) install --no-deps --ignore-requires-python lava-nc==0.10.0
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/hwloop demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
