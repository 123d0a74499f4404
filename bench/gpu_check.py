"""Prove qlora_rag's real CUDA path on a GPU machine that can't receive the bundled 98 MB model: build a
SmolLM2-shaped model with random weights next to the bundled tokenizer, then run `qlora-rag train` on it
(NF4 + double quant, LoRA, paged 8-bit AdamW, packing, speed-ups), reload the adapter, and check that packed
varlen attention matches running each example alone. Usage: python bench/gpu_check.py TOKENIZER_DIR"""
import json, shutil, subprocess, sys, torch
from pathlib import Path
from transformers import AutoConfig, AutoModelForCausalLM

src, model_dir, run = Path(sys.argv[1]), Path('/tmp/smol-random'), Path('/tmp/gpu-run')
shutil.rmtree(model_dir, ignore_errors=True); shutil.rmtree(run, ignore_errors=True)
shutil.copytree(src, model_dir)
torch.manual_seed(0)
AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir)).save_pretrained(model_dir)
cmd = [sys.executable, '-m', 'qlora_rag.cli', 'train', '--model', str(model_dir), '--output', str(run), '--max-steps', '12', '--max-examples', '300']
print('$', ' '.join(cmd), flush=True)
subprocess.run(cmd, check=True)
report = json.loads((run/'report.json').read_text())
print({k: report[k] for k in ('steps', 'tokens_seen', 'tokens_per_s', 'peak_memory_mib', 'device', 'speedups')})
print('loss first/last:', report['losses'][0]['loss'], report['losses'][-1]['loss'])

from qlora_rag.core import ModelConfig
from qlora_rag.model import load_base_model, load_adapter, load_tokenizer, use_varlen_attention
tok = load_tokenizer(str(model_dir))
base = load_base_model(ModelConfig(name=str(model_dir)))
print('4-bit layer:', type(base.model.layers[0].mlp.down_proj).__name__, 'on', base.device, 'dtype', base.dtype)
tuned = load_adapter(base, run/'adapter')
ids = tok('### Question:\nWhat is 12 plus 30?\n\n### Response:\n', return_tensors='pt').to('cuda')
print('adapter reloaded on the 4-bit CUDA base; greedy tokens:', tuned.generate(**ids, max_new_tokens=5, do_sample=False)[0, -5:].tolist())

full = load_base_model(ModelConfig(name=str(model_dir), quant='none'))
a, b = tok('The ship sailed at dawn.')['input_ids'], tok('Who built the bridge in 1873?')['input_ids']
pos = torch.tensor([list(range(len(a))) + list(range(len(b)))], device='cuda')
with torch.no_grad():
    alone = torch.cat([full(input_ids=torch.tensor([x], device='cuda'), use_cache=False).logits[0] for x in (a, b)])
    use_varlen_attention(full)
    packed = full(input_ids=torch.tensor([a + b], device='cuda'), position_ids=pos, use_cache=False).logits[0]
err = (packed - alone).abs().max().item()
print(f'varlen packed vs separate: max |diff| {err:.4f} (logit scale {alone.abs().max().item():.2f})')
assert err < 0.05 * alone.abs().max().item()
print('GPU CHECK OK')
