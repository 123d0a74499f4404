"""QLoRA training throughput: seed-style TRL vs TRL with packing vs qlora_rag's default.

Same model, same data, same optimizer for every variant: a Llama-shaped model (`--shape`: 1.7B, or
Llama-3-8B's shape) built from a config with random weights (throughput does not depend on the
weights), NF4 + double quant, LoRA r=16 on all linear layers, sequences of lognormal length (mean
~250 tokens, tail to `--max-len`) split into prompt and completion. Each variant runs in a fresh
process; we time `--steps` optimizer steps after `--warmup` steps and count real (non-pad) tokens.
Prints one table with tokens/s, peak GPU memory, the memory `train.activation_gib` expected, the
checkpointing used, MFU and the ratios (c)/(a), (c)/(b), (c)/(u). Variant (u) is Unsloth's QLoRA
with its own recommended settings on the same model, data, LoRA settings, optimizer and steps; its
wheels live apart from the project's (Unsloth pins older TRL/datasets): `--unsloth-path` or
$UNSLOTH_PATH is put first on its process's path. MFU is 6 x parameters x tokens/s over the card's
bf16 matrix peak, measured once at the start of the run. Run with `make bench-train` on a CUDA
machine.
"""
import argparse, dataclasses, json, math, os, shutil, subprocess, sys, time
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
# name: (description, SFTConfig overrides, options: batch, accum, every, dropout, attn, liger,
#        compile)
VARIANTS = {
    'a': ('seed-style: TRL, pad to longest, gradient checkpointing',
          dict(packing=False, padding_free=False), {}),
    'b': ('TRL packing (bfd) + gradient checkpointing', PACK, {}),
    'c': ('qlora_rag default (sft_args, speedups, auto checkpointing)', None, {}),
    'c-compile': ('(c) with Liger kernels instead of torch.compile', None, dict(compile='off')),
    'u': ("Unsloth: FastLanguageModel, its checkpointing, packing", PACK, dict(unsloth=True)),
    'c-gc': ('(c) without gradient checkpointing', NO_CKPT, {}),
    'c/2': ('(c) checkpointing every 2nd layer (train.checkpoint_every=2)', None, dict(every=2)),
    'c/3': ('(c) checkpointing every 3rd layer (train.checkpoint_every=3)', None, dict(every=3)),
    'c/4': ('(c) checkpointing every 4th layer (train.checkpoint_every=4)', None, dict(every=4)),
    'c+bs16': ('(c) with 16 rows per step', None, dict(batch=16)),
    'c/1': ('(c) checkpointing every layer (train.checkpoint_every=1)', None, dict(every=1)),
    'c/1+off': ("(c/1) + TRL's activation offloading to CPU memory",
                dict(activation_offloading=True), dict(every=1)),
    'c/1+off+bs4': ('(c/1+off) with 4 rows per step', dict(activation_offloading=True),
                    dict(every=1, batch=4)),
    'c/1+off+bs2': ('(c/1+off) with 2 rows per step', dict(activation_offloading=True),
                    dict(every=1, batch=2)),
    'c/1+off+ga2+d0': ('(c/1+off) as 2 micro-batches of 4 rows, LoRA dropout 0 as (u)',
                       dict(activation_offloading=True),
                       dict(every=1, batch=4, accum=2, dropout=0.0)),
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
    t.grad_accum, t.compile = opts.get('accum', 1), opts.get('compile', t.compile)
    t.output_dir = f'/tmp/bench-{name}'
    t.save_steps = t.eval_steps = 10**6
    t.logging_steps = 1  # per-step losses, compared across variants
    return cfg


def trl_args(cfg, name: str):
    "TRL's arguments for `cfg` with the variant's overrides."
    from qlora_rag.train import sft_args
    return dataclasses.replace(sft_args(cfg, 'cuda:0', False), report_to=[], save_strategy='no',
                               disable_tqdm=True, **(VARIANTS[name][1] or {}))


def timed_train(trainer, steps: int, warmup: int, profile: bool=False) -> dict:
    "Train; time `steps` optimizer steps after `warmup` ones, counting real (non-pad) tokens."
    import torch
    from transformers import TrainerCallback
    marks, seen, shapes = {}, [0], []
    collate = trainer.data_collator
    def counting(rows):  # one count for every trainer: the tokens its collator hands the model
        batch = collate(rows)
        mask = batch.get('attention_mask')
        seen[0] += int(mask.sum()) if mask is not None else batch['input_ids'].numel()
        shapes.append(tuple(batch['input_ids'].shape))
        return batch
    trainer.data_collator = counting
    class Clock(TrainerCallback):
        def on_step_end(self, a, state, control, **kw):
            if state.global_step in (warmup, warmup + steps):
                torch.cuda.synchronize()
                marks[state.global_step] = (time.perf_counter(), seen[0],
                                            getattr(trainer, '_total_train_tokens', 0))
            if state.global_step == warmup: torch.cuda.reset_peak_memory_stats()
    trainer.add_callback(Clock())
    if profile:
        from torch.profiler import profile as prof, ProfilerActivity
        with prof(activities=[ProfilerActivity.CUDA]) as p: trainer.train()
        print(p.key_averages().table(sort_by='cuda_time_total', row_limit=18), file=sys.stderr)
    else: trainer.train()
    (t0, k0, n0), (t1, k1, n1) = marks[warmup], marks[warmup + steps]
    return dict(tokens_per_s=(k1 - k0) / (t1 - t0), step_s=(t1 - t0) / steps,
                tokens_per_step=(k1 - k0) / steps, trainer_tokens_per_step=(n1 - n0) / steps,
                batches=len(shapes), last_batch=shapes[-1], losses=losses(trainer),
                rows_per_step=trainer.args.per_device_train_batch_size
                * trainer.args.gradient_accumulation_steps,
                peak_gib=torch.cuda.max_memory_allocated() / 2**30,
                gpu=torch.cuda.get_device_name())


def losses(trainer) -> list[float]:
    "The per-step training losses the trainer logged."
    return [l['loss'] for l in trainer.state.log_history if 'loss' in l]


def run_variant(name: str, model_dir: str, steps: int, warmup: int, batch: int, max_len: int,
                out: str, profile: bool):
    "Time one variant in this process; write its result to `out`."
    import torch
    from trl import SFTTrainer
    from qlora_rag.model import load_base_model, add_lora, load_tokenizer
    from qlora_rag.packing import training_attention
    from qlora_rag.train import speedups, memory_plan, activation_gib
    cfg = variant_config(name, model_dir, steps, warmup, batch, max_len)
    if VARIANTS[name][2].get('liger'):
        from liger_kernel.transformers import apply_liger_kernel_to_llama
        apply_liger_kernel_to_llama(rope=True, rms_norm=True, swiglu=True, cross_entropy=False,
                                    fused_linear_cross_entropy=False)
    base = load_base_model(cfg.model)
    weights_gib, policy = torch.cuda.memory_allocated() / 2**30, 'every layer (TRL)'
    if name[0] == 'c':  # qlora_rag's own choice, as `train.make_trainer` makes it
        cfg, policy = memory_plan(cfg, base, 'cuda:0')
    args = trl_args(cfg, name)
    every = max(cfg.train.checkpoint_every, 1) if args.gradient_checkpointing else 0
    est = weights_gib + activation_gib(base.config, cfg.train.batch_size * max_len, every)
    model = add_lora(base, cfg.lora, args.gradient_checkpointing)
    has_tok = (Path(model_dir)/'tokenizer.json').exists()
    vocab = base.config.vocab_size
    tok = load_tokenizer(model_dir) if has_tok else _dummy_tokenizer(vocab)
    applied = (speedups(model, training_attention(cfg, 'cuda:0'), 'cuda:0', cfg.train.compile)
               if name[0] == 'c' else [])
    data = bench_data(cfg, steps, warmup, vocab)
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tok)
    res = dict(variant=name, desc=VARIANTS[name][0], **timed_train(trainer, steps, warmup, profile),
               batch=cfg.train.batch_size, packing=args.packing, max_len=max_len,
               grad_ckpt=args.gradient_checkpointing, checkpointing=policy,
               estimate_gib=round(est, 2), params=base.num_parameters(), speedups=applied)
    Path(out).write_text(json.dumps(res))


def bench_data(cfg, steps: int, warmup: int, vocab: int):
    "The same rows for every variant: enough for every step, whatever the packing."
    return make_data(max(4096, (warmup + steps + 2) * cfg.train.batch_size * 4),
                     cfg.data.max_tokens, vocab)


def run_unsloth(name: str, model_dir: str, steps: int, warmup: int, batch: int, max_len: int,
                out: str, profile: bool):
    """Time Unsloth's QLoRA in this process (unsloth is imported first, as it asks).
    Its SFTConfig defaults stay, gradient accumulation 2 among them: 2 x `batch` rows per step."""
    import unsloth  # noqa: F401 -- patches transformers/TRL/PEFT before they load
    from trl import SFTTrainer, SFTConfig
    cfg = variant_config(name, model_dir, steps, warmup, batch, max_len)
    model, tok, params = unsloth_model(model_dir, cfg)
    args = SFTConfig(output_dir=cfg.train.output_dir, per_device_train_batch_size=batch,
                     max_steps=warmup + steps, learning_rate=cfg.train.learning_rate,
                     optim='paged_adamw_8bit', bf16=True, max_length=max_len, report_to=[],
                     save_strategy='no', logging_steps=1, disable_tqdm=True, seed=0, **PACK)
    trainer = SFTTrainer(model=model, args=args, processing_class=tok,
                         train_dataset=bench_data(cfg, steps, warmup, model.config.vocab_size))
    res = dict(variant=name, desc=VARIANTS[name][0], **timed_train(trainer, steps, warmup, profile),
               batch=batch, packing=True, max_len=max_len, grad_ckpt=True,
               checkpointing="every layer (Unsloth's offloaded)", estimate_gib=None,
               params=params, speedups=[f'unsloth {unsloth.__version__}'])
    Path(out).write_text(json.dumps(res))


def unsloth_model(model_dir: str, cfg):
    "Unsloth's 4-bit model with LoRA as its docs recommend, the tokenizer and the params counted."
    import torch
    from unsloth import FastLanguageModel
    folder = Path(f'/tmp/bench-unsloth-{Path(model_dir).name}')  # the weights plus a tokenizer
    if not folder.exists():
        folder.mkdir()
        for f in Path(model_dir).iterdir(): (folder/f.name).symlink_to(f)
        if not (folder/'tokenizer.json').exists():
            vocab = json.loads((folder/'config.json').read_text())['vocab_size']
            _dummy_tokenizer(vocab).save_pretrained(folder)
    model, tok = FastLanguageModel.from_pretrained(
        model_name=str(folder), max_seq_length=cfg.data.max_tokens, load_in_4bit=True,
        dtype=torch.bfloat16, local_files_only=True)
    params = model.num_parameters()
    model = FastLanguageModel.get_peft_model(
        model, r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=0, bias='none',
        target_modules=['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj',
                        'down_proj'], use_gradient_checkpointing='unsloth', random_state=0)
    return model, tok, params


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
    ap.add_argument('--unsloth-path', default=os.environ.get('UNSLOTH_PATH', ''),
                    help="folder with Unsloth and its pinned deps, put first on (u)'s path")
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
        run = run_unsloth if VARIANTS[a.one][2].get('unsloth') else run_variant
        return run(a.one, a.model_dir, a.steps, a.warmup, a.batch, a.max_len, a.out, a.profile)
    build_model(Path(a.model_dir), SHAPES[a.shape])
    peak = bf16_peak_tflops()
    results = []
    for v in a.variants.split(','):
        out = Path(f'/tmp/bench-{v}.json')
        out.unlink(missing_ok=True)
        cmd = [sys.executable, __file__, '--one', v, '--model-dir', a.model_dir, '--out', str(out),
               '--steps', str(a.steps), '--warmup', str(a.warmup), '--batch', str(a.batch),
               '--shape', a.shape, '--max-len', str(a.max_len)]
        p = subprocess.run(cmd + (['--profile'] if a.profile else []), env=variant_env(v, a))
        ok = p.returncode == 0 and out.exists()
        results.append(json.loads(out.read_text()) if ok else
                       dict(variant=v, desc=VARIANTS[v][0], error=f'exit {p.returncode}'))
        print(json.dumps(results[-1]), flush=True)
    for r in results: r['peak_tflops'] = peak
    report(results, a.shape, a.max_len)
    Path(a.json).write_text(json.dumps(results, indent=2))


def variant_env(name: str, a) -> dict:
    "The environment of variant `name`'s process: Unsloth's own packages first for (u)."
    env = dict(os.environ, HF_HUB_OFFLINE='1', TRANSFORMERS_OFFLINE='1')
    if VARIANTS[name][2].get('unsloth') and a.unsloth_path:
        env['PYTHONPATH'] = os.pathsep.join([a.unsloth_path, str(REPO), env.get('PYTHONPATH', '')])
    return env


def bf16_peak_tflops(n: int=8192, reps: int=50) -> float:
    "The card's measured bf16 matrix peak: TFLOP/s of back-to-back n x n x n matmuls."
    import torch
    x = torch.randn(n, n, device='cuda', dtype=torch.bfloat16)
    for _ in range(5): x @ x
    torch.cuda.synchronize(); t = time.perf_counter()
    for _ in range(reps): x @ x
    torch.cuda.synchronize()
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e12


def loss_gap(r: dict, ref: dict) -> float|None:
    "Largest relative per-step loss difference between two runs on the same batches."
    pairs = list(zip(r.get('losses', []), ref.get('losses', [])))
    return max(abs(x - y) / abs(y) for x, y in pairs) if pairs else None


def report(results: list[dict], shape: str, max_len: int):
    "Print the results table: tokens/s, memory, MFU, loss gap to (b), and the ratios of (c)."
    ok = {r['variant']: r for r in results if 'error' not in r}
    first = next(iter(ok.values()), {})
    peak = first.get('peak_tflops', 0)
    params = max((r['params'] for r in ok.values()), default=0)  # 4-bit counts can be packed
    print(f"\nGPU: {first.get('gpu', '?')} (bf16 matrix peak measured: {peak:,.0f} TFLOP/s); "
          f"Llama-shaped {shape}, NF4+DQ, LoRA r16 all-linear, paged_adamw_8bit, seq<={max_len}")
    print(f"{'variant':<8}{'what':<44}{'tokens/s':>10}{'step s':>8}{'peak GiB':>9}{'est GiB':>8}"
          f"{'MFU':>6}{'loss vs b':>10}  checkpointing")
    for r in results:
        if 'error' in r: print(f"{r['variant']:<8}{r['desc'][:43]:<44}{r['error']:>10}"); continue
        mfu = 6 * params * r['tokens_per_s'] / (peak * 1e12) if peak else 0
        est = f"{r['estimate_gib']:.1f}" if r.get('estimate_gib') is not None else '-'
        gap = loss_gap(r, ok['b']) if 'b' in ok and r['packing'] else None
        gap = f'{gap:.2%}' if gap is not None else '-'
        print(f"{r['variant']:<8}{r['desc'][:43]:<44}{r['tokens_per_s']:>10,.0f}{r['step_s']:>8.2f}"
              f"{r['peak_gib']:>9.1f}{est:>8}{mfu:>6.0%}{gap:>10}  {r['checkpointing']}")
    if 'u' in ok:
        u = ok['u']
        print('vs (u): ' + ', '.join(f"({v}) {r['tokens_per_s'] / u['tokens_per_s']:.2f}x at "
                                     f"{r['peak_gib']:.1f} GiB" for v, r in ok.items() if v != 'u')
              + f" ((u): {u['peak_gib']:.1f} GiB)")
    if 'c' not in ok: return
    c = ok['c']['tokens_per_s']
    print('ratios: ' + ', '.join(f"(c)/({v}) = {c / ok[v]['tokens_per_s']:.2f}x"
                                 for v in ('a', 'b', 'u') if v in ok))


if __name__ == '__main__': main()
