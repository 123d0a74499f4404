#!/usr/bin/env bash
# DDP on a multi-GPU machine: the same `qlora-rag train` run on 1 GPU and, through `accelerate launch`, on 2.
# The bundled 98 MB model can't travel to the GPU machine, so a SmolLM2-shaped model with random weights is built
# next to the bundled tokenizer (TOKENIZER_DIR); throughput does not depend on the weights. Usage: bench/ddp_check.sh TOKENIZER_DIR OUT_DIR
set -euo pipefail
tok=$1; out=$2; model=/tmp/smol-random
python3 - "$tok" "$model" <<'PY'
import shutil, sys, torch
from transformers import AutoConfig, AutoModelForCausalLM
shutil.rmtree(sys.argv[2], ignore_errors=True); shutil.copytree(sys.argv[1], sys.argv[2])
torch.manual_seed(0); AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(sys.argv[2])).save_pretrained(sys.argv[2])
PY
args=(train --model $model --max-steps 30 --batch-size 8 --max-examples 1200)
rm -rf /tmp/run-1gpu /tmp/run-ddp
CUDA_VISIBLE_DEVICES=0 python3 -m qlora_rag.cli "${args[@]}" --output /tmp/run-1gpu > "$out/train_1gpu.log" 2>&1
accelerate launch --multi_gpu --num_processes 2 -m qlora_rag.cli "${args[@]}" --output /tmp/run-ddp > "$out/train_ddp.log" 2>&1
python3 - <<'PY'
import json
from pathlib import Path
from qlora_rag.core import ModelConfig
from qlora_rag.model import load_base_model, load_adapter
for name in ('run-1gpu', 'run-ddp'):
    r = json.loads(Path(f'/tmp/{name}/report.json').read_text())
    print(name, {k: r[k] for k in ('steps', 'epochs', 'tokens_seen', 'tokens_per_s', 'train_time_s', 'peak_memory_mib', 'device', 'speedups')},
          'loss first/last', r['losses'][0]['loss'], r['losses'][-1]['loss'])
m = load_adapter(load_base_model(ModelConfig(name='/tmp/smol-random')), '/tmp/run-ddp/adapter')
print('DDP adapter reloads on the 4-bit base:', type(m.base_model.model.model.layers[0].mlp.down_proj.base_layer).__name__)
PY
grep -c "" "$out/train_ddp.log" >/dev/null; grep -m3 -i "distributed\|world\|num_processes\|rank" "$out/train_ddp.log" || true
nvidia-smi --query-gpu=name --format=csv,noheader
