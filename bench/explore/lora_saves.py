"""What one LoRA-wrapped decoder layer keeps for its backward pass, per token.

Builds a one-layer Llama of a `bench_train.py` shape, loads it as training does (`load_base_model`:
NF4 + double quant on a GPU, float32 on a CPU), wraps it with the default LoRA (`add_lora`), and
counts the bytes of the distinct tensors autograd saves in one forward pass of the layer at two
token counts; the difference per token is what each token costs while the layer is recomputed.
Each combination of adapters in float32 (PEFT's default) or in the compute dtype, and the layer
eager or compiled whole (`train.compile_layers`), runs in turn. On a GPU the forward runs under
bf16 autocast, as the trainer's does. `--dropout` sets the LoRA dropout; `--memory-budget`
(torch's `activation_memory_budget`: below 1 the compiled layer recomputes more in its backward)
and `--rng-ops` (functionalized random ops, which a compiled layer may recompute instead of saving
its dropout masks) change what the compiled layer keeps:
    python bench/explore/lora_saves.py --shape 8b --dropout 0 --memory-budget 0.5
"""
import argparse, sys, tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_train import SHAPES, recompute
from qlora_rag.core import LoraParams


def one_layer_model(shape: str, dest: Path):
    "A random one-layer model of `shape` saved to `dest`, with a small vocabulary."
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(**dict(SHAPES[shape], num_hidden_layers=1, vocab_size=1024))
    LlamaForCausalLM(cfg).to(torch.bfloat16).save_pretrained(dest)
    return dest


def saved_bytes(layer, rotary, tokens: int, device: str, dtype) -> int:
    "Bytes of the distinct tensors of at least `tokens` elements autograd saves in one forward."
    import torch
    x = torch.randn(1, tokens, rotary.config.hidden_size, device=device, dtype=dtype,
                    requires_grad=True)
    pos = torch.arange(tokens, device=device)[None]
    seen = {}
    def pack(t):
        if t.numel() >= tokens: seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t
    with torch.autocast(device.split(':')[0], dtype, enabled=device != 'cpu'), \
         torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        layer(x, position_embeddings=rotary(x, pos), position_ids=pos)
    return sum(seen.values())


def measure(shape: str, adapters: str, compiled: bool, t1: int, t2: int, dropout: float) -> float:
    "Bytes saved per token by the layer, from the difference between `t1` and `t2` tokens."
    import torch
    from qlora_rag.core import ModelConfig
    from qlora_rag.model import load_base_model, add_lora, compute_dtype, pick_device
    from qlora_rag.train import compile_layers
    device = pick_device('auto')
    dtype = compute_dtype(device)
    with tempfile.TemporaryDirectory() as d:
        base = load_base_model(ModelConfig(name=str(one_layer_model(shape, Path(d)))))
    model = add_lora(base, LoraParams(dropout=dropout), gradient_checkpointing=False)
    if adapters == 'compute':
        for p in model.parameters():
            if p.requires_grad: p.data = p.data.to(dtype)
    if compiled: compile_layers(model, whole=True)
    model.train()
    inner = model.get_base_model().model
    layer, rotary = inner.layers[0], inner.rotary_emb
    s1, s2 = (saved_bytes(layer, rotary, t, device, dtype) for t in (t1, t2))
    return (s2 - s1) / (t2 - t1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--shape', default='1.7b', choices=list(SHAPES))
    ap.add_argument('--tokens', type=int, nargs=2, default=(1024, 2048))
    ap.add_argument('--adapters', nargs='+', default=['float32', 'compute'],
                    choices=['float32', 'compute'])
    ap.add_argument('--modes', nargs='+', default=['eager', 'compiled'],
                    choices=['eager', 'compiled'])
    ap.add_argument('--dropout', type=float, default=LoraParams().dropout)
    ap.add_argument('--memory-budget', type=float, default=1.0)
    ap.add_argument('--rng-ops', action='store_true')
    a = ap.parse_args()
    recompute(a.memory_budget, a.rng_ops)
    from types import SimpleNamespace
    from qlora_rag.train import layer_bytes
    h = SHAPES[a.shape]['hidden_size']
    estimate = layer_bytes(SimpleNamespace(**SHAPES[a.shape]))
    print(f"{a.shape}: estimate (train.layer_bytes) {estimate / 1e3:.0f} KB a token; dropout "
          f"{a.dropout}, memory budget {a.memory_budget}, rng ops {a.rng_ops}")
    for adapters in a.adapters:
        for mode in a.modes:
            compiled = mode == 'compiled'
            per = measure(a.shape, adapters, compiled, *a.tokens, a.dropout)
            print(f"adapters {adapters:<8} {mode:<9}"
                  f"{per / 1e3:8.0f} KB a token ({per / 2 / h:.1f} hidden sizes in bf16)")


if __name__ == '__main__': main()
