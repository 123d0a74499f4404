"""QLoRA training throughput: seed-style TRL vs TRL with packing vs qlora_rag's default.

Same model, same data, same optimizer for every variant: a Llama-shaped model (`--shape`: 1.7B, or
Llama-3-8B's shape) built from a config with random weights (throughput does not depend on the
weights), NF4 + double quant, LoRA r=16 on all linear layers, sequences of lognormal length (mean
~250 tokens, tail to `--max-len`) split into prompt and completion. Each variant runs in a fresh
process; we time `--steps` optimizer steps after `--warmup` steps and count real (non-pad) tokens.
Prints one table with tokens/s, peak GPU memory, the memory `train.activation_gib` expected, the
checkpointing used, and the ratios (c)/(a), (c)/(b). Run with `make bench-train` on a CUDA machine.
"""
import argparse, dataclasses, json, math, shutil, subprocess, sys, time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHAPES = {  # Llama-shaped models built with random weights (throughput does not depend on them)
    '1.7b': dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=24,
                 num_attention_heads=32, num_key_value_heads=32, vocab_size=49152,
                 max_position_embeddings=2048, tie_word_embeddings=True),
    '8b': dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
               num_attention_heads=32, num_key_value_heads=8, vocab_size=128256,
               max_position_embeddings=8192, tie_word_embeddings=False, rope_theta=500000.0)}
NO_CKPT = dict(gradient_checkpointing=False)
PACK = dict(packing=True, packing_strategy='bfd')
# name: (description, SFTConfig overrides, options: batch, every, dropout, attn, liger)
VARIANTS = {
    'a': ('seed-style: TRL, pad to longest, gradient checkpointing',
          dict(packing=False, padding_free=False), {}),
    'b': ('TRL packing (bfd) + gradient checkpointing', PACK, {}),
    'c': ('qlora_rag default (sft_args, speedups, auto checkpointing)', None, {}),
    'c-gc': ('(c) without gradient checkpointing', NO_CKPT, {}),
    'c/2': ('(c) checkpointing every 2nd layer (train.checkpoint_every=2)', None, dict(every=2)),
    'c/3': ('(c) checkpointing every 3rd layer (train.checkpoint_every=3)', None, dict(every=3)),
    'c/4': ('(c) checkpointing every 4th layer (train.checkpoint_every=4)', None, dict(every=4)),
    'c+bs16': ('(c) with 16 rows per step', None, dict(batch=16)),
    'c-gc/4': ('(c) no checkpointing, 4 rows per step', NO_CKPT, dict(batch=4)),
    # exploration: one change at a time on top of (b)
    'b+liger': ('(b) + Liger RMSNorm/SwiGLU/RoPE kernels', PACK, dict(liger=True)),
    'b+nodrop': ('(b) + LoRA dropout 0', PACK, dict(dropout=0.0)),
    'b+bs16': ('(b) with 16 rows per step', PACK, dict(batch=16)),
    'b+bs32': ('(b) with 32 rows per step', PACK, dict(batch=32)),
    'b-gc': ('(b) without gradient checkpointing', dict(PACK, **NO_CKPT), {}),
    'b+all': ('(b) + liger + dropout 0 + 32 rows', PACK, dict(liger=True, dropout=0.0, batch=32)),
    'b+flex': ('(b) + FlexAttention document mask', PACK, dict(attn='flex_attention')),
    'b+flex-gc': ('(b) + flex, no checkpointing', dict(PACK, **NO_CKPT),
                  dict(attn='flex_attention')),
    'b+flex-gc+liger': ('(b) + flex + liger, no checkpointing', dict(PACK, **NO_CKPT),
                        dict(attn='flex_attention', liger=True)),
    'b+flex+liger+bs16': ('(b) + flex + liger, 16 rows', PACK,
                          dict(attn='flex_attention', liger=True, batch=16)),
    'b+flex-gc+liger+bs16': ('(b) + flex + liger, no ckpt, 16 rows', dict(PACK, **NO_CKPT),
                             dict(attn='flex_attention', liger=True, batch=16)),
}


def build_model(dest: Path, # Folder to write
                shape: dict, # LlamaConfig fields
                skeleton: Path|None=None, # A folder whose tokenizer is copied along, if given
                init_range: float=0.02, # Standard deviation of the random weights
                seed: int=0) -> Path:
    "Save a random-init Llama model of `shape` to `dest` (bf16 on a GPU), unless one is there."
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    if (dest/'config.json').exists(): return dest
    if skeleton: shutil.copytree(skeleton, dest, dirs_exist_ok=True)  # config.json is replaced
    cuda = torch.cuda.is_available()
    torch.manual_seed(seed)
    with torch.device('cuda' if cuda else 'cpu'):
        model = LlamaForCausalLM(LlamaConfig(**shape, initializer_range=init_range))
    model.to(torch.bfloat16 if cuda else torch.float32).save_pretrained(dest)
    return dest


def make_data(n: int, max_len: int, vocab: int, seed: int=0, mean: int=250):
    "Pre-tokenized prompt/completion examples with dolly-QA-like lengths."
    import random
    from datasets import Dataset
    rng = random.Random(seed)
    sigma = 0.6; mu = math.log(mean) - sigma**2 / 2
    rows = []
    for _ in range(n):
        n_tok = max(16, min(max_len, int(rng.lognormvariate(mu, sigma))))
        answer = max(2, n_tok // 6)
        rows.append(dict(input_ids=[rng.randrange(3, vocab) for _ in range(n_tok)],
                         completion_mask=[0] * (n_tok - answer) + [1] * answer))
    return Dataset.from_list(rows)


def variant_config(name: str, model_dir: str, steps: int, warmup: int, batch: int, max_len: int):
    "qlora_rag's config for variant `name`."
    from qlora_rag.core import Config, ModelConfig
    desc, overrides, opts = VARIANTS[name]
    cfg = Config()
    cfg.model = ModelConfig(name=model_dir, attn=opts.get('attn', 'auto'))
    cfg.data.max_tokens = max_len
    if 'dropout' in opts: cfg.lora.dropout = opts['dropout']
    if 'every' in opts: cfg.train.checkpoint_every = opts['every']
    t = cfg.train
    t.batch_size, t.max_steps = opts.get('batch', batch), warmup + steps
    t.output_dir = f'/tmp/bench-{name}'
    t.save_steps = t.eval_steps = t.logging_steps = 10**6
    return cfg


def trl_args(cfg, name: str):
    "TRL's arguments for `cfg` with the variant's overrides."
    from qlora_rag.train import sft_args
    return dataclasses.replace(sft_args(cfg, 'cuda:0', False), report_to=[], save_strategy='no',
                               disable_tqdm=True, **(VARIANTS[name][1] or {}))


def run_variant(name: str, model_dir: str, steps: int, warmup: int, batch: int, max_len: int,
                out: str, profile: bool):
    "Time one variant in this process; write its result to `out`."
    import torch
    from transformers import TrainerCallback
    from trl import SFTTrainer
    from qlora_rag.model import load_base_model, add_lora, load_tokenizer
    from qlora_rag.packing import training_attention
    from qlora_rag.train import speedups, checkpoint_policy, activation_gib
    cfg = variant_config(name, model_dir, steps, warmup, batch, max_len)
    if VARIANTS[name][2].get('liger'):
        from liger_kernel.transformers import apply_liger_kernel_to_llama
        apply_liger_kernel_to_llama(rope=True, rms_norm=True, swiglu=True, cross_entropy=False,
                                    fused_linear_cross_entropy=False)
    base = load_base_model(cfg.model)
    weights_gib, policy = torch.cuda.memory_allocated() / 2**30, 'every layer (TRL)'
    if name[0] == 'c':  # qlora_rag's own choice, as `train.make_trainer` makes it
        every, policy = checkpoint_policy(cfg, base, 'cuda:0')
        cfg.train.gradient_checkpointing, cfg.train.checkpoint_every = every > 0, max(every, 1)
    args = trl_args(cfg, name)
    every = max(cfg.train.checkpoint_every, 1) if args.gradient_checkpointing else 0
    est = weights_gib + activation_gib(base.config, cfg.train.batch_size * max_len, every)
    model = add_lora(base, cfg.lora, args.gradient_checkpointing)
    has_tok = (Path(model_dir)/'tokenizer.json').exists()
    vocab = base.config.vocab_size
    tok = load_tokenizer(model_dir) if has_tok else _dummy_tokenizer(vocab)
    applied = speedups(model, training_attention(cfg, 'cuda:0'), 'cuda:0') if name[0] == 'c' else []
    data = make_data(max(4096, (warmup + steps + 2) * cfg.train.batch_size * 4), max_len, vocab)
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tok)
    marks = {}
    class Clock(TrainerCallback):
        def on_step_end(self, a, state, control, **kw):
            if state.global_step in (warmup, warmup + steps):
                torch.cuda.synchronize()
                marks[state.global_step] = (time.perf_counter(), trainer._total_train_tokens)
            if state.global_step == warmup: torch.cuda.reset_peak_memory_stats()
    trainer.add_callback(Clock())
    if profile:
        from torch.profiler import profile as prof, ProfilerActivity
        with prof(activities=[ProfilerActivity.CUDA]) as p: trainer.train()
        print(p.key_averages().table(sort_by='cuda_time_total', row_limit=18), file=sys.stderr)
    else: trainer.train()
    (t0, k0), (t1, k1) = marks[warmup], marks[warmup + steps]
    res = dict(variant=name, desc=VARIANTS[name][0], tokens_per_s=(k1 - k0) / (t1 - t0),
               step_s=(t1 - t0) / steps, tokens_per_step=(k1 - k0) / steps,
               peak_gib=torch.cuda.max_memory_allocated() / 2**30, gpu=torch.cuda.get_device_name(),
               batch=cfg.train.batch_size, packing=args.packing, max_len=max_len,
               grad_ckpt=args.gradient_checkpointing, checkpointing=policy,
               estimate_gib=round(est, 2), params=base.num_parameters(), speedups=applied)
    Path(out).write_text(json.dumps(res))


def _dummy_tokenizer(vocab: int):
    "A tokenizer stand-in for pre-tokenized data: TRL only needs pad/eos ids."
    from transformers import PreTrainedTokenizerFast
    from tokenizers import Tokenizer, models
    words = Tokenizer(models.WordLevel({f't{i}': i for i in range(vocab)}, unk_token='t0'))
    tok = PreTrainedTokenizerFast(tokenizer_object=words)
    tok.add_special_tokens(dict(pad_token='t0', eos_token='t2', unk_token='t0'))
    return tok


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--variants', default='a,b,c', help=f"comma-separated: {', '.join(VARIANTS)}")
    ap.add_argument('--steps', type=int, default=20, help='timed optimizer steps')
    ap.add_argument('--warmup', type=int, default=5, help='untimed steps first')
    ap.add_argument('--batch', type=int, default=8, help='rows per step (unless the variant says)')
    ap.add_argument('--shape', default='1.7b', choices=SHAPES, help='model shape')
    ap.add_argument('--max-len', type=int, default=1024, help='longest sequence (packed row)')
    ap.add_argument('--model-dir', help='random model, built once (default /tmp/bench-llama-SHAPE)')
    ap.add_argument('--json', default='bench_train.json', help='where to write the results')
    ap.add_argument('--profile', action='store_true', help='print a CUDA kernel profile of each')
    ap.add_argument('--one', help=argparse.SUPPRESS)
    ap.add_argument('--out', help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    a.model_dir = a.model_dir or f'/tmp/bench-llama-{a.shape}'
    unknown = [v for v in a.variants.split(',') if v not in VARIANTS]
    if unknown: ap.error(f"unknown variant(s) {', '.join(unknown)}")
    return a


def main(argv=None):
    a = parse(argv)
    if a.one:
        return run_variant(a.one, a.model_dir, a.steps, a.warmup, a.batch, a.max_len, a.out,
                           a.profile)
    build_model(Path(a.model_dir), SHAPES[a.shape])
    results = []
    for v in a.variants.split(','):
        out = Path(f'/tmp/bench-{v}.json')
        out.unlink(missing_ok=True)
        cmd = [sys.executable, __file__, '--one', v, '--model-dir', a.model_dir, '--out', str(out),
               '--steps', str(a.steps), '--warmup', str(a.warmup), '--batch', str(a.batch),
               '--shape', a.shape, '--max-len', str(a.max_len)]
        p = subprocess.run(cmd + (['--profile'] if a.profile else []))
        ok = p.returncode == 0 and out.exists()
        results.append(json.loads(out.read_text()) if ok else
                       dict(variant=v, desc=VARIANTS[v][0], error=f'exit {p.returncode}'))
        print(json.dumps(results[-1]), flush=True)
    report(results, a.shape, a.max_len)
    Path(a.json).write_text(json.dumps(results, indent=2))


def report(results: list[dict], shape: str, max_len: int):
    "Print the results table and the ratios of (c) to (a) and (b)."
    ok = {r['variant']: r for r in results if 'error' not in r}
    gpu = next(iter(ok.values()))['gpu'] if ok else '?'
    print(f"\nGPU: {gpu}; Llama-shaped {shape}, NF4+DQ, LoRA r16 all-linear, paged_adamw_8bit, "
          f"seq<={max_len}")
    print(f"{'variant':<8}{'what':<52}{'tokens/s':>10}{'step s':>8}{'tok/step':>9}{'peak GiB':>9}"
          f"{'est GiB':>8}  checkpointing")
    for r in results:
        if 'error' in r: print(f"{r['variant']:<8}{r['desc']:<52}{r['error']:>10}"); continue
        print(f"{r['variant']:<8}{r['desc'][:51]:<52}{r['tokens_per_s']:>10,.0f}{r['step_s']:>8.2f}"
              f"{r['tokens_per_step']:>9,.0f}{r['peak_gib']:>9.1f}{r['estimate_gib']:>8.1f}  "
              f"{r['checkpointing']}")
    if {'a', 'b', 'c'} <= set(ok):
        c = ok['c']['tokens_per_s']
        print(f"ratios: (c)/(a) = {c / ok['a']['tokens_per_s']:.2f}x, "
              f"(c)/(b) = {c / ok['b']['tokens_per_s']:.2f}x")


if __name__ == '__main__': main()
