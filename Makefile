# hwloop — the two commands a fresh machine needs:  make demo   |   make test
PY      ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.hwloop-installed
PIP     := $(BIN)/python -m pip --disable-pip-version-check -q
PEERS   := snntorch==1.0.0 norse==1.1.0 rockpool==3.1.0 nirtorch==2.6 lava-dl==0.6.0

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
	# The real packages the interop tests run our NIR / netx files in (pins: pyproject's `peers` extra).
	# --no-deps: norse and rockpool[torch] declare torchvision, lava-dl declares Python <3.11 and torch 2.3;
	# what they import is installed above (lava-dl's netx import shim: hwloop/interop/lava_dl_compat.py).
	$(PIP) install --no-deps --ignore-requires-python $(PEERS)
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
