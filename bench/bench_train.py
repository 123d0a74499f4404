"""QLoRA training throughput: seed-style TRL vs TRL with packing vs qlora_rag's default (`make bench-train`).

Same model, same data, same optimizer for every variant: a Llama-shaped ~1.7B model built from a config
with random weights (throughput does not depend on the weights), NF4 + double quant, LoRA r=16 on all linear
layers, sequences of lognormal length (mean ~250 tokens, tail to 1024) split into prompt and completion.
Each variant runs in a fresh process; we time `--steps` optimizer steps after `--warmup` steps and count
real (non-pad) tokens. Prints one table with tokens/s, peak GPU memory and the ratios (c)/(a), (c)/(b).
"""
import argparse, dataclasses, json, math, subprocess, sys, time
from pathlib import Path

SHAPE = dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=24, num_attention_heads=32, num_key_value_heads=32,
             vocab_size=49152, max_position_embeddings=2048, tie_word_embeddings=True)
# name: (description, SFTConfig overrides, qlora_rag options)
PACK = dict(packing=True, packing_strategy='bfd')
VARIANTS = {
    'a': ('seed-style: TRL, pad to longest, gradient checkpointing', dict(packing=False, padding_free=False), {}),
    'b': ('TRL packing (bfd) + gradient checkpointing', PACK, {}),
    'c': ("qlora_rag default (train.sft_args + speedups)", None, {}),
    'c-gc': ("(c) without gradient checkpointing", dict(gradient_checkpointing=False), {}),
    'c/2': ("(c) checkpointing every 2nd layer (train.checkpoint_every=2)", None, dict(every=2)),
    'c/3': ("(c) checkpointing every 3rd layer (train.checkpoint_every=3)", None, dict(every=3)),
    'c/4': ("(c) checkpointing every 4th layer (train.checkpoint_every=4)", None, dict(every=4)),
    'c+bs16': ("(c) with 16 rows per step", None, dict(batch=16)),
    'c-gc/4': ("(c) no checkpointing, 4 rows per step", dict(gradient_checkpointing=False), dict(batch=4)),
    # exploration: one change at a time on top of (b)
    'b+liger': ('(b) + Liger RMSNorm/SwiGLU/RoPE kernels', PACK, dict(liger=True)),
    'b+nodrop': ('(b) + LoRA dropout 0', PACK, dict(dropout=0.0)),
    'b+bs16': ('(b) with 16 rows per step', PACK, dict(batch=16)),
    'b+bs32': ('(b) with 32 rows per step', PACK, dict(batch=32)),
    'b-gc': ('(b) without gradient checkpointing', dict(PACK, gradient_checkpointing=False), {}),
    'b+all': ('(b) + liger + dropout 0 + 32 rows', PACK, dict(liger=True, dropout=0.0, batch=32)),
    'b+flex': ('(b) + FlexAttention document mask', PACK, dict(attn='flex_attention')),
    'b+flex-gc': ('(b) + flex, no checkpointing', dict(PACK, gradient_checkpointing=False), dict(attn='flex_attention')),
    'b+flex-gc+liger': ('(b) + flex + liger, no checkpointing', dict(PACK, gradient_checkpointing=False), dict(attn='flex_attention', liger=True)),
    'b+flex+liger+bs16': ('(b) + flex + liger, 16 rows', PACK, dict(attn='flex_attention', liger=True, batch=16)),
    'b+flex-gc+liger+bs16': ('(b) + flex + liger, no ckpt, 16 rows', dict(PACK, gradient_checkpointing=False), dict(attn='flex_attention', liger=True, batch=16)),
}

def build_model(dest: Path):
    "Save a random-init Llama-shaped model (bf16) to `dest` so it loads through the normal quantizing path."
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    if (dest/'config.json').exists(): return dest
    torch.manual_seed(0)
    with torch.device('cuda'): model = LlamaForCausalLM(LlamaConfig(**SHAPE, dtype='bfloat16')).to(torch.bfloat16)
    model.save_pretrained(dest); return dest

def make_data(n: int, seed: int=0, mean: int=250, max_len: int=1024):
    "Pre-tokenized prompt/completion examples with dolly-QA-like lengths."
    import random
    from datasets import Dataset
    rng = random.Random(seed)
    sigma = 0.6; mu = math.log(mean) - sigma**2 / 2
    rows = []
    for _ in range(n):
        L = max(16, min(max_len, int(rng.lognormvariate(mu, sigma))))
        c = max(2, L // 6)
        rows.append(dict(input_ids=[rng.randrange(3, SHAPE['vocab_size']) for _ in range(L)], completion_mask=[0] * (L - c) + [1] * c))
    return Dataset.from_list(rows)

def run_variant(name: str, model_dir: str, steps: int, warmup: int, batch: int, out: str, profile: bool):
    import torch
    from transformers import TrainerCallback
    from trl import SFTTrainer
    from qlora_rag.core import Config, ModelConfig
    from qlora_rag.model import load_base_model, add_lora, load_tokenizer
    from qlora_rag import train as qtrain
    desc, overrides, opts = VARIANTS[name]
    batch = opts.get('batch', batch)
    cfg = Config(); cfg.model = ModelConfig(name=model_dir); cfg.data.max_tokens = 1024
    if 'dropout' in opts: cfg.lora.dropout = opts['dropout']
    if 'every' in opts: cfg.train.checkpoint_every = opts['every']
    cfg.model.attn = opts.get('attn', cfg.model.attn)
    cfg.train.batch_size, cfg.train.max_steps, cfg.train.output_dir = batch, warmup + steps, f'/tmp/bench-{name}'
    cfg.train.save_steps = cfg.train.eval_steps = 10**6; cfg.train.logging_steps = 10**6
    args = qtrain.sft_args(cfg, 'cuda:0', False)
    args = dataclasses.replace(args, report_to=[], save_strategy='no', disable_tqdm=True, **(overrides or {}))
    if name == 'a': args.max_length = 1024
    data = make_data(max(4096, (warmup + steps + 2) * batch * 4))
    if opts.get('liger'):
        from liger_kernel.transformers import apply_liger_kernel_to_llama
        apply_liger_kernel_to_llama(rope=True, rms_norm=True, swiglu=True, cross_entropy=False, fused_linear_cross_entropy=False)
    model = load_base_model(cfg.model)
    model = add_lora(model, cfg.lora, args.gradient_checkpointing)
    tok = load_tokenizer(model_dir) if (Path(model_dir)/'tokenizer.json').exists() else None
    applied = qtrain.speedups(model, cfg, 'cuda:0') if name.startswith('c') else []
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tok or _dummy_tokenizer())
    marks = {}
    class Clock(TrainerCallback):
        def on_step_end(self, a, state, control, **kw):
            if state.global_step in (warmup, warmup + steps):
                torch.cuda.synchronize(); marks[state.global_step] = (time.perf_counter(), trainer._total_train_tokens)
            if state.global_step == warmup: torch.cuda.reset_peak_memory_stats()
    trainer.add_callback(Clock())
    if profile:
        from torch.profiler import profile as prof, ProfilerActivity
        with prof(activities=[ProfilerActivity.CUDA]) as p: trainer.train()
        print(p.key_averages().table(sort_by='cuda_time_total', row_limit=18), file=sys.stderr)
    else: trainer.train()
    (t0, k0), (t1, k1) = marks[warmup], marks[warmup + steps]
    res = dict(variant=name, desc=desc, tokens_per_s=(k1 - k0) / (t1 - t0), step_s=(t1 - t0) / steps, tokens_per_step=(k1 - k0) / steps,
               peak_gib=torch.cuda.max_memory_allocated() / 2**30, gpu=torch.cuda.get_device_name(), batch=batch,
               packing=args.packing, grad_ckpt=args.gradient_checkpointing, speedups=applied)
    Path(out).write_text(json.dumps(res))

def _dummy_tokenizer():
    "A tokenizer stand-in for pre-tokenized data: TRL only needs pad/eos ids."
    from transformers import PreTrainedTokenizerFast
    from tokenizers import Tokenizer, models
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({f't{i}': i for i in range(SHAPE['vocab_size'])}, unk_token='t0')))
    tok.add_special_tokens(dict(pad_token='t0', eos_token='t2', unk_token='t0'))
    return tok

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--variants', default='a,b,c'); ap.add_argument('--steps', type=int, default=20)
    ap.add_argument('--warmup', type=int, default=5); ap.add_argument('--batch', type=int, default=8)
    ap.add_argument('--model-dir', default='/tmp/bench-llama-1.7b'); ap.add_argument('--json', default='bench_train.json')
    ap.add_argument('--profile', action='store_true'); ap.add_argument('--one', help=argparse.SUPPRESS); ap.add_argument('--out', help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one: return run_variant(a.one, a.model_dir, a.steps, a.warmup, a.batch, a.out, a.profile)
    build_model(Path(a.model_dir))
    results = []
    for v in a.variants.split(','):
        out = f'/tmp/bench-{v}.json'
        Path(out).unlink(missing_ok=True)
        p = subprocess.run([sys.executable, __file__, '--one', v, '--model-dir', a.model_dir, '--steps', str(a.steps), '--warmup', str(a.warmup),
                            '--batch', str(a.batch), '--out', out] + (['--profile'] if a.profile else []))
        results.append(json.loads(Path(out).read_text()) if p.returncode == 0 and Path(out).exists() else dict(variant=v, desc=VARIANTS[v][0], error=f'exit {p.returncode}'))
        print(json.dumps(results[-1]), flush=True)
    report(results); Path(a.json).write_text(json.dumps(results, indent=2))

def report(results):
    ok = {r['variant']: r for r in results if 'error' not in r}
    print(f"\nGPU: {next(iter(ok.values()))['gpu'] if ok else '?'}; Llama-shaped 1.7B, NF4+DQ, LoRA r16 all-linear, paged_adamw_8bit, seq<=1024")
    print(f"{'variant':<8}{'what':<52}{'tokens/s':>10}{'step s':>8}{'tok/step':>9}{'peak GiB':>9}")
    for r in results:
        if 'error' in r: print(f"{r['variant']:<8}{r['desc']:<52}{r['error']:>10}"); continue
        print(f"{r['variant']:<8}{r['desc'][:51]:<52}{r['tokens_per_s']:>10,.0f}{r['step_s']:>8.2f}{r['tokens_per_step']:>9,.0f}{r['peak_gib']:>9.1f}")
    if {'a', 'b', 'c'} <= set(ok):
        c = ok['c']['tokens_per_s']
        print(f"ratios: (c)/(a) = {c / ok['a']['tokens_per_s']:.2f}x, (c)/(b) = {c / ok['b']['tokens_per_s']:.2f}x")

if __name__ == '__main__': main()
