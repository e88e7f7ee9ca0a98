# Two commands from a fresh clone (Python >= 3.10 and make):
#   make quickstart   a virtual environment in .venv, the project installed, one training on the embedded corpus
#   make test         the same environment, then the README's test command
# PyTorch comes from its CPU-only index where that is reachable, else from the default index: its newest CPU
# build (a version ending in +cpu) when it has one, else plain torch (on Linux the CUDA build, several GB).
# The setup says which build it installed. With uv on PATH, uv installs.
# Variables: PYTHON (the interpreter that makes .venv), VENV, TORCH_INDEX.

PYTHON ?= python3
VENV ?= .venv
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
BIN := $(VENV)/bin
UV := $(shell command -v uv 2>/dev/null)
ifdef UV
  INSTALL := $(UV) pip install --quiet --python $(BIN)/python
else
  INSTALL := $(BIN)/python -m pip install --quiet --disable-pip-version-check
endif

.PHONY: quickstart test setup

quickstart: setup
	$(BIN)/python -m seq2seq.train +experiment=gru
	@echo "(the commands run in the environment: . $(VENV)/bin/activate, or $(BIN)/python -m seq2seq.translate ...)"

test: setup
	$(BIN)/python -m pytest -q

setup: $(VENV)/.installed

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	@export PIP_DEFAULT_TIMEOUT=20 PIP_RETRIES=1 UV_HTTP_TIMEOUT=20; \
	if $(BIN)/python -c "import torch" 2>/dev/null; then \
	    echo "PyTorch: already installed in $(VENV)"; \
	elif $(BIN)/python -c "import urllib.request as u; u.urlopen('$(TORCH_INDEX)/torch/', timeout=10)" 2>/dev/null; \
	then \
	    echo "PyTorch: the CPU build from $(TORCH_INDEX)"; \
	    $(INSTALL) torch --index-url $(TORCH_INDEX); \
	else \
	    cpu=$$($(BIN)/python -m pip index versions torch 2>/dev/null | sed -n 's/^Available versions: //p' \
	        | tr ',' '\n' | tr -d ' ' | grep '+cpu$$' | head -n 1); \
	    if [ -n "$$cpu" ]; then \
	        echo "PyTorch: $(TORCH_INDEX) cannot be reached; torch==$$cpu from the default index"; \
	        $(INSTALL) "torch==$$cpu"; \
	    else \
	        echo "PyTorch: $(TORCH_INDEX) cannot be reached and the default index has no CPU build: torch"; \
	        $(INSTALL) torch; \
	    fi; \
	fi
	$(INSTALL) -e ".[dev]"
	@$(BIN)/python -c "import torch; cuda = torch.version.cuda; \
	    print(f'PyTorch {torch.__version__}:', f'the CUDA {cuda} build' if cuda else 'the CPU build')"
	@touch $@
