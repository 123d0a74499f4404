#!/usr/bin/env bash
# DDP on a multi-GPU machine: the same `qlora-rag train` run on 1 GPU and, through
# `accelerate launch`, on 2. The bundled 98 MB model can't travel to the GPU machine, so a
# SmolLM2-shaped model with random weights is built from the bundled model's config and tokenizer
# (SKELETON, default bench/smollm2); throughput does not depend on the weights.
# Usage: bench/ddp_check.sh OUT_DIR [SKELETON]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: bench/ddp_check.sh OUT_DIR [SKELETON]}
skeleton=${2:-$here/smollm2}
model=/tmp/smol-random
export PYTHONPATH="$here/..${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$out"
python3 - "$skeleton" "$model" "$here" <<'PY'
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from gpu_check import random_model
random_model(Path(sys.argv[1]), Path(sys.argv[2]))
PY
args=(train --model $model --max-steps 30 --batch-size 8 --max-examples 1200)
rm -rf /tmp/run-1gpu /tmp/run-ddp
CUDA_VISIBLE_DEVICES=0 python3 -m qlora_rag.cli "${args[@]}" --output /tmp/run-1gpu \
  > "$out/train_1gpu.log" 2>&1
accelerate launch --multi_gpu --num_processes 2 -m qlora_rag.cli "${args[@]}" \
  --output /tmp/run-ddp > "$out/train_ddp.log" 2>&1
python3 - <<'PY'
import json
from pathlib import Path
from qlora_rag.core import ModelConfig
from qlora_rag.model import load_base_model, load_adapter
keys = ('steps', 'epochs', 'tokens_seen', 'tokens_per_s', 'train_time_s', 'peak_memory_mib',
        'device', 'speedups')
for name in ('run-1gpu', 'run-ddp'):
    r = json.loads(Path(f'/tmp/{name}/report.json').read_text())
    first, last = r['losses'][0]['loss'], r['losses'][-1]['loss']
    print(name, {k: r[k] for k in keys}, 'loss first/last', first, last)
m = load_adapter(load_base_model(ModelConfig(name='/tmp/smol-random')), '/tmp/run-ddp')
layer = m.base_model.model.model.layers[0].mlp.down_proj.base_layer
print('DDP adapter reloads on the 4-bit base:', type(layer).__name__)
PY
grep -m3 -i "distributed\|world\|num_processes\|rank" "$out/train_ddp.log" || true
nvidia-smi --query-gpu=name --format=csv,noheader
