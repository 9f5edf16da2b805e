# Two commands on a fresh clone: `make demo` trains the seed MLP on MNIST,
# `make test` runs the whole test suite (the docs' code blocks and the strict docs
# build included). Each creates .venv and installs first; `make docs` builds the site.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# A CPU build of torch: on this project's machines torch==2.13.0 is a local wheel
# (PIP_FIND_LINKS=/opt/wheels); an unpinned torch pulls a multi-GB CUDA build.
TORCH  ?= torch==2.13.0
OUT    ?= out
ARGS   ?=

.PHONY: demo test docs bench fuzz gpu-wheels venv venv-test venv-docs clean help

help:
	@echo "make demo   # train 784-100-200-10 on MNIST (25 epochs), plot to $(OUT)/accuracy.png"
	@echo "make test   # run the whole test suite on every installed backend"
	@echo "make docs   # build the reference site (API, command line, guides) into site/"
	@echo "make bench  # side-by-side benchmark (xpnet vs hand-written NumPy vs PyTorch)"
	@echo "make fuzz   # fuzz the IDX, checkpoint and safetensors readers, 100,000 inputs each"
	@echo "make gpu-wheels  # fetch the wheels ci/gpu.sh installs on a lent GPU machine"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Stamp files: re-install only when pyproject.toml changes.
$(VENV)/.core: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[plot,bench]"
	touch $@

$(VENV)/.test: $(VENV)/.core
	$(BIN)/python -m pip install -q -e ".[test,lint,mpi,sklearn,docs,onnx,safetensors]" "$(TORCH)" "jax>=0.4.32"
	touch $@

$(VENV)/.docs: $(VENV)/.core
	$(BIN)/python -m pip install -q -e ".[docs]"
	touch $@

venv: $(VENV)/.core
venv-test: $(VENV)/.test
venv-docs: $(VENV)/.docs

demo: venv
	$(BIN)/xpnet train --plot $(OUT)/accuracy.png --save $(OUT)/mnist_mlp.npz $(ARGS)

test: venv-test
	bash ci/test.sh $(BIN)/python $(ARGS)

# Every warning is an error (mkdocs.yml: strict); open site/index.html.
docs: venv-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict

bench: venv-test
	$(BIN)/python -m benchmarks.mlp $(ARGS)

# The file readers (IDX, .npz and .safetensors checkpoints), FUZZ_N mutants each under RLIMIT_AS: see benchmarks/fuzz.py.
# FUZZ_ENGINE=atheris: coverage-guided (needs `pip install atheris`).
FUZZ_N ?= 100000
FUZZ_ENGINE ?= mutate
fuzz: venv-test
	$(BIN)/python -m benchmarks.fuzz --target idx --n $(FUZZ_N) --engine $(FUZZ_ENGINE) --out $(OUT)/fuzz
	$(BIN)/python -m benchmarks.fuzz --target checkpoint --n $(FUZZ_N) --engine $(FUZZ_ENGINE) --out $(OUT)/fuzz
	$(BIN)/python -m benchmarks.fuzz --target safetensors --n $(FUZZ_N) --engine $(FUZZ_ENGINE) --out $(OUT)/fuzz

# Wheels the GPU machine lacks (it has no network): see ci/README.md.
gpu-wheels:
	bash ci/gpu_wheels.sh

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache site
