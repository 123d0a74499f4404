"""QLoRA training throughput: seed-style TRL vs TRL with packing vs qlora_rag's default vs Unsloth.

Same model, same data, same optimizer for every variant: a Llama-shaped model (1.7B, or Llama-3-8B's
shape) built from a config with random weights (throughput does not depend on the weights), NF4 +
double quant, LoRA r=16 on all linear layers, sequences of lognormal length (mean ~250 tokens, tail
to the group's longest) split into prompt and completion. Each variant runs in a fresh process on
one GPU; we time `--steps` optimizer steps after `--warmup` steps and count real (non-pad) tokens.

A run is a list of groups, `SHAPE[@MAX_LEN]:VARIANT,...` (e.g. `8b@2048:b,c,u`). Its jobs (one per
group and variant) are spread over the machine's GPUs, one job per GPU at a time, each GPU taking
the next job as it finishes one; every job's result is kept in `--work`, so a run stopped by
`--stop-after` (or killed) goes on where it was when started again with `--resume`. `--multi-gpu`
then runs `bench/multi_gpu.py` (one GPU, DDP, FSDP-QLoRA) on all GPUs. The report prints, per group,
one table with tokens/s, peak GPU memory, the memory the training plan expected
(`train.activation_gib`, or `train.offloaded_gib` where every layer is offloaded), the
checkpointing used, MFU, the per-step loss gap to (b) and the ratios of (c) and against (u); then
the multi-GPU figures.

Variant (u) is Unsloth's QLoRA with its own recommended settings on the same model, data, LoRA
settings, optimizer and steps; its wheels live apart from the project's (Unsloth pins older
TRL/datasets): `--unsloth-path` or $UNSLOTH_PATH is put first on its process's path. MFU is 6 x
parameters x tokens/s over the bf16 matrix peak of the GPU the job ran on, measured on each GPU at
the start of the run. Run with `make bench-train` on a CUDA machine.
"""
import argparse, dataclasses, fcntl, json, math, os, shutil, signal, subprocess, sys, time
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
#        compile, stash, budget (torch's activation_memory_budget), rng (functionalized rng ops))
VARIANTS = {
    'a': ('seed-style: TRL, pad to longest, gradient checkpointing',
          dict(packing=False, padding_free=False), {}),
    'b': ('TRL packing (bfd) + gradient checkpointing', PACK, {}),
    'c': ('qlora_rag default (sft_args, speedups, auto checkpointing)', None, {}),
    'c-compile': ('(c) with Liger kernels instead of torch.compile', None, dict(compile='off')),
    'c+layers': ('(c) compiling whole decoder layers (train.compile=layers)', None,
                 dict(compile='layers')),
    'c+parts': ('(c) compiling each layer by parts (train.compile=parts)', None,
                dict(compile='parts')),
    'u': ("Unsloth: FastLanguageModel, its checkpointing, packing", PACK, dict(unsloth=True)),
    'u+bs4': ('(u) in micro-batches of 4 rows, 8 a step as ours', PACK,
              dict(unsloth=True, batch=4)),
    'c+mem2.5': ('(c) planned for 2.5 GiB (train.memory_gib)', None, dict(memory=2.5)),
    'c+mem8': ('(c) planned for 8 GiB (train.memory_gib)', None, dict(memory=8.0)),
    'c+mem8+d0': ('(c+mem8) with LoRA dropout 0 as (u)', None, dict(memory=8.0, dropout=0.0)),
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
    'c/1+off+ga4+d0': ('(c/1+off) as 4 micro-batches of 2 rows, LoRA dropout 0 as (u)',
                       dict(activation_offloading=True),
                       dict(every=1, batch=2, accum=4, dropout=0.0)),
    'c/1+off+ga2+d0+layers': ('(c/1+off+ga2+d0) compiling whole decoder layers',
                              dict(activation_offloading=True),
                              dict(every=1, batch=4, accum=2, dropout=0.0, compile='layers')),
    'c/1+off+ga2+d0+layers+s1': ('(c/1+off+ga2+d0+layers) keeping 1 activation on the GPU, not 5',
                                 dict(activation_offloading=True),
                                 dict(every=1, batch=4, accum=2, dropout=0.0, compile='layers',
                                      stash=1)),
    'c-gc/4': ('(c) no checkpointing, 4 rows per step', NO_CKPT, dict(batch=4)),
    'c/1+off+d0': ('(c/1+off) with LoRA dropout 0 as (u)', dict(activation_offloading=True),
                   dict(every=1, dropout=0.0)),
    'c/1+off+d0+ab.5': ('(c/1+off+d0), compiled layers with activation memory budget 0.5',
                        dict(activation_offloading=True), dict(every=1, dropout=0.0, budget=0.5)),
    'c/1+off+ab.5+rng': ('(c/1+off), budget 0.5, dropout masks recomputed (functionalized rng)',
                         dict(activation_offloading=True), dict(every=1, budget=0.5, rng=True)),
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
    "qlora_rag's config for variant `name`, with a run folder of its own."
    from qlora_rag.core import Config, ModelConfig
    desc, overrides, opts = VARIANTS[name]
    cfg = Config()
    cfg.model = ModelConfig(name=model_dir, attn=opts.get('attn', 'auto'))
    cfg.data.max_tokens = max_len
    if 'dropout' in opts: cfg.lora.dropout = opts['dropout']
    if 'every' in opts: cfg.train.checkpoint_every = opts['every']
    if 'memory' in opts: cfg.train.memory_gib = opts['memory']
    t = cfg.train
    t.batch_size, t.max_steps = opts.get('batch', batch), warmup + steps
    t.grad_accum, t.compile = opts.get('accum', 1), opts.get('compile', t.compile)
    t.output_dir = f'/tmp/bench-out/{file_name(Path(model_dir).name, max_len, name)}'
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


def recompute(budget: float=1.0, # torch's activation_memory_budget: below 1 keeps less
              rng: bool=False, # functionalized random ops, so dropout masks can be drawn again
             ):
    "Set what compiled layers keep for their backward; read when they compile, at the first step."
    import torch._functorch.config as functorch
    functorch.activation_memory_budget, functorch.functionalize_rng_ops = budget, rng


def run_variant(name: str, model_dir: str, steps: int, warmup: int, batch: int, max_len: int,
                out: str, profile: bool):
    "Time one variant in this process; write its result to `out`."
    import torch
    from trl import SFTTrainer
    from qlora_rag.model import load_base_model, add_lora, load_tokenizer
    from qlora_rag.packing import training_attention
    from qlora_rag.train import speedups, memory_plan, activation_gib, offloaded_gib
    cfg = variant_config(name, model_dir, steps, warmup, batch, max_len)
    opts = VARIANTS[name][2]
    if opts.get('liger'):
        from liger_kernel.transformers import apply_liger_kernel_to_llama
        apply_liger_kernel_to_llama(rope=True, rms_norm=True, swiglu=True, cross_entropy=False,
                                    fused_linear_cross_entropy=False)
    recompute(opts.get('budget', 1.0), opts.get('rng', False))  # torch's defaults unless set
    base = load_base_model(cfg.model)
    weights_gib, policy = torch.cuda.memory_allocated() / 2**30, 'every layer (TRL)'
    if name[0] == 'c':  # qlora_rag's own choice, as `train.make_trainer` makes it
        cfg, policy = memory_plan(cfg, base, 'cuda:0')
    args = trl_args(cfg, name)
    every = max(cfg.train.checkpoint_every, 1) if args.gradient_checkpointing else 0
    tokens = cfg.train.batch_size * max_len
    est = weights_gib + (offloaded_gib(base.config, tokens)
                         if args.activation_offloading and every == 1
                         else activation_gib(base.config, tokens, every))
    model = add_lora(base, cfg.lora, args.gradient_checkpointing)
    has_tok = (Path(model_dir)/'tokenizer.json').exists()
    vocab = base.config.vocab_size
    tok = load_tokenizer(model_dir) if has_tok else _dummy_tokenizer(vocab)
    applied = (speedups(model, training_attention(cfg, 'cuda:0'), 'cuda:0', cfg.train.compile)
               if name[0] == 'c' else [])
    data = bench_data(cfg, steps, warmup, vocab)
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tok)
    if 'stash' in opts:  # how many offloaded activations wait on the GPU at a time
        from trl.models import get_act_offloading_ctx_manager
        trainer.maybe_activation_offload_context = get_act_offloading_ctx_manager(
            trainer.model, max_fwd_stash_size=opts['stash'])
    res = dict(variant=name, desc=VARIANTS[name][0], **timed_train(trainer, steps, warmup, profile),
               batch=cfg.train.batch_size, packing=args.packing, max_len=max_len,
               grad_ckpt=args.gradient_checkpointing, checkpointing=policy,
               estimate_gib=round(est, 2), params=base.num_parameters(), speedups=applied,
               versions=versions())
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
    batch = VARIANTS[name][2].get('batch', batch)
    args = SFTConfig(output_dir=cfg.train.output_dir, per_device_train_batch_size=batch,
                     max_steps=warmup + steps, learning_rate=cfg.train.learning_rate,
                     optim='paged_adamw_8bit', bf16=True, max_length=max_len, report_to=[],
                     save_strategy='no', logging_steps=1, disable_tqdm=True, seed=0, **PACK)
    trainer = SFTTrainer(model=model, args=args, processing_class=tok,
                         train_dataset=bench_data(cfg, steps, warmup, model.config.vocab_size))
    res = dict(variant=name, desc=VARIANTS[name][0], **timed_train(trainer, steps, warmup, profile),
               batch=batch, packing=True, max_len=max_len, grad_ckpt=True,
               checkpointing="every layer (Unsloth's offloaded)", estimate_gib=None,
               params=params, speedups=[f'unsloth {unsloth.__version__}'],
               versions=dict(versions(), unsloth=unsloth.__version__))
    Path(out).write_text(json.dumps(res))


def unsloth_folder(model_dir: Path) -> Path:
    "A folder of `model_dir`'s files plus a tokenizer, as Unsloth's loader wants one."
    folder = Path(f'/tmp/bench-unsloth-{model_dir.name}')
    if not folder.exists():
        folder.mkdir()
        for f in model_dir.iterdir(): (folder/f.name).symlink_to(f)
        if not (folder/'tokenizer.json').exists():
            vocab = json.loads((folder/'config.json').read_text())['vocab_size']
            _dummy_tokenizer(vocab).save_pretrained(folder)
    return folder


def unsloth_model(model_dir: str, cfg):
    "Unsloth's 4-bit model with LoRA as its docs recommend, the tokenizer and the params counted."
    import torch
    from unsloth import FastLanguageModel
    model, tok = FastLanguageModel.from_pretrained(
        model_name=str(unsloth_folder(Path(model_dir))), max_seq_length=cfg.data.max_tokens,
        load_in_4bit=True, dtype=torch.bfloat16, local_files_only=True)
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


def file_name(*parts) -> str:
    "A file name for a job: its parts joined, '/' and '+' spelt out."
    return '_'.join(map(str, parts)).replace('/', '~').replace('+', '^')


def parse_group(spec: str) -> tuple[str, int, list[str]]:
    "`SHAPE[@MAX_LEN]:VARIANT,...` as (shape, max_len, variants); `argparse` reports errors."
    head, _, names = spec.partition(':')
    shape, _, max_len = head.partition('@')
    variants = [v for v in names.split(',') if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if shape not in SHAPES or not variants or unknown or not (max_len or '1').isdigit():
        raise argparse.ArgumentTypeError(
            f"{spec!r}: want SHAPE[@MAX_LEN]:VARIANT,... with SHAPE one of {', '.join(SHAPES)}"
            + (f"; unknown variant(s) {', '.join(unknown)}" if unknown else ''))
    return shape, int(max_len or 1024), variants


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('groups', nargs='*', type=parse_group,
                    default=[('1.7b', 1024, ['a', 'b', 'c'])],
                    help=f"SHAPE[@MAX_LEN]:VARIANT,... (default 1.7b:a,b,c); variants: "
                         f"{', '.join(VARIANTS)}")
    ap.add_argument('--steps', type=int, default=12, help='timed optimizer steps')
    ap.add_argument('--warmup', type=int, default=4, help='untimed steps first')
    ap.add_argument('--batch', type=int, default=8, help='rows per step (unless the variant says)')
    ap.add_argument('--gpus', type=int, default=0, help='GPUs to spread the jobs over (0: all)')
    ap.add_argument('--work', type=Path, default=Path('/tmp/bench-train'),
                    help="folder of each job's result and log, emptied at the start (a folder "
                         "holding anything but an earlier run is refused)")
    ap.add_argument('--stop-after', type=float, default=0,
                    help='start no job after this many seconds (0: no limit)')
    ap.add_argument('--resume', action='store_true',
                    help="keep --work's results and run only the jobs it lacks")
    ap.add_argument('--multi-gpu', action='store_true',
                    help='then one GPU vs DDP vs FSDP-QLoRA (bench/multi_gpu.py) on all GPUs')
    ap.add_argument('--json', type=Path, default=Path('bench_train.json'),
                    help='where to write the results')
    ap.add_argument('--profile', action='store_true', help='print a CUDA kernel profile of each')
    ap.add_argument('--unsloth-path', default=os.environ.get('UNSLOTH_PATH', ''),
                    help="folder with Unsloth and its pinned deps, put first on (u)'s path")
    for hidden in ('--one', '--out', '--shape', '--max-len', '--model-dir'):
        ap.add_argument(hidden, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def model_dir(shape: str) -> Path:
    return Path(f'/tmp/bench-llama-{shape}')


def ensure_model(shape: str):
    "Build `shape`'s random model and Unsloth's folder once, whichever job asks first."
    dest = model_dir(shape)
    with open(f'{dest}.lock', 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the other jobs wait for the first one's build
        if Path(f'{dest}.ready').exists(): return
        subprocess.run([sys.executable, '-c', 'import sys; sys.path[:0] = sys.argv[1:2]; '
                        'from bench_train import *; d = Path(sys.argv[2]); '
                        'unsloth_folder(build_model(d, SHAPES[sys.argv[3]]))',
                        str(REPO/'bench'), str(dest), shape], check=True)
        Path(f'{dest}.ready').touch()


def run_one(a):
    "Time variant `a.one` in this process (the job a scheduler started)."
    ensure_model(a.shape)
    run = run_unsloth if VARIANTS[a.one][2].get('unsloth') else run_variant
    run(a.one, a.model_dir, a.steps, a.warmup, a.batch, int(a.max_len), a.out, a.profile)


def job_record(job: tuple, gpu: int, proc, log: Path, out: Path, started: float) -> dict:
    "A finished job's result, or its error with the last lines of its log."
    shape, max_len, v = job
    r = (json.loads(out.read_text()) if proc.returncode == 0 and out.exists() else
         dict(variant=v, desc=VARIANTS[v][0], error=f'exit {proc.returncode}',
              log_tail=log.read_text(errors='replace').splitlines()[-6:]))
    return dict(r, group=f'{shape}@{max_len}', gpu_index=gpu, started=started, ended=time.time())


def start_job(job: tuple, gpu: int, a):
    "Start one job's process on GPU `gpu`; returns the process, its log and its result file."
    shape, max_len, v = job
    name = file_name(shape, max_len, v)
    out, log = a.work/f'{name}.part', a.work/f'{name}.log'
    out.unlink(missing_ok=True)
    cmd = [sys.executable, __file__, '--one', v, '--shape', shape, '--max-len', str(max_len),
           '--model-dir', str(model_dir(shape)), '--out', str(out), '--steps', str(a.steps),
           '--warmup', str(a.warmup), '--batch', str(a.batch)] + (['--profile'] * a.profile)
    env = dict(variant_env(v, a), CUDA_VISIBLE_DEVICES=str(gpu))
    with log.open('w') as f:
        proc = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
    return proc, log, out


def stop_jobs(running: dict):
    "End the jobs still running (the scheduler is stopping): terminate, then kill stragglers."
    for _, _, proc, *_ in running.values(): proc.terminate()
    for _, _, proc, *_ in running.values():
        try: proc.wait(timeout=30)
        except subprocess.TimeoutExpired: proc.kill()


def schedule(jobs: list[tuple], gpus: list[int], a, peaks: dict) -> list[tuple]:
    "Run `jobs`, one per GPU at a time, keeping each result in `a.work`; returns those not started."
    t0, queue, running = time.time(), list(jobs), {}
    late = lambda: a.stop_after and time.time() - t0 > a.stop_after
    try: _run_queue(queue, running, gpus, a, peaks, late)
    finally: stop_jobs(running)  # a stopped scheduler leaves no job behind on a GPU
    return queue


def _run_queue(queue: list, running: dict, gpus: list[int], a, peaks: dict, late):
    while running or (queue and not late()):
        for gpu in [g for g in gpus if g not in running]:
            if not queue or late(): break
            job = queue.pop(0)
            running[gpu] = (job, time.time(), *start_job(job, gpu, a))
        time.sleep(1)
        for gpu, (job, started, proc, log, out) in list(running.items()):
            if proc.poll() is None: continue
            del running[gpu]
            r = dict(job_record(job, gpu, proc, log, out, started), peak_tflops=peaks[gpu])
            (a.work/f'{file_name(*job)}.json').write_text(json.dumps(r))
            said = (f"{r['error']}: " + ' | '.join(r['log_tail']) if 'error' in r else
                    f"{r['tokens_per_s']:,.0f} tokens/s")
            print(f"{r['group']} {r['variant']} on GPU {gpu}: {said}", flush=True)


def finished(result: Path) -> bool:
    "Whether a job's result is kept and is not an error (a failed job runs again)."
    return result.exists() and 'error' not in json.loads(result.read_text())


def start_work(a):
    "Empty `a.work`, or with `--resume` keep it if its jobs ran with the same steps and batch."
    kept, now = a.work/'settings.json', dict(steps=a.steps, warmup=a.warmup, batch=a.batch)
    if a.work.exists() and any(a.work.iterdir()) and not kept.exists():
        sys.exit(f"{a.work} is not empty and holds no earlier run: give --work a new folder")
    if not a.resume: shutil.rmtree(a.work, ignore_errors=True)
    elif kept.exists() and json.loads(kept.read_text()) != now:
        sys.exit(f"{a.work} holds jobs run with {kept.read_text()}: resume with those settings")
    a.work.mkdir(parents=True, exist_ok=True)
    kept.write_text(json.dumps(now))


def measure_peaks(gpus: list[int], work: Path) -> dict:
    "Each GPU's measured bf16 matrix peak, kept in `work` for a run that goes on later."
    import torch
    kept = work/'peaks.json'
    peaks = {int(k): v for k, v in json.loads(kept.read_text()).items()} if kept.exists() else {}
    for g in [g for g in gpus if g not in peaks]:  # a resumed run may have more GPUs
        with torch.cuda.device(g): peaks[g] = bf16_peak_tflops()
    torch.cuda.empty_cache()
    kept.write_text(json.dumps(peaks))
    return peaks


def run_multi_gpu(a, n: int) -> dict|None:
    "One GPU vs DDP vs FSDP over `n` GPUs (bench/multi_gpu.py), once per run."
    res = a.work/'multi_gpu.json'
    runs = json.loads(res.read_text())['runs'].values() if res.exists() else []
    failed = any('error' in r for r in runs)
    if (failed or not res.exists()) and n >= 2:
        subprocess.run([sys.executable, str(REPO/'bench'/'multi_gpu.py'), '--json', str(res),
                        '--logs', str(a.work)], env=dict(os.environ, HF_HUB_OFFLINE='1'))
    return json.loads(res.read_text()) if res.exists() else None


def versions() -> dict:
    "Versions of what the project's variants ran with ((u) records its own)."
    from importlib.metadata import version
    return {p: version(p) for p in ('torch', 'transformers', 'trl', 'peft', 'bitsandbytes')}


def main(argv=None):
    a = parse(argv)
    if a.one: return run_one(a)
    import torch
    signal.signal(signal.SIGTERM, lambda *_: sys.exit('bench-train: stopped (SIGTERM)'))
    start_work(a)
    gpus = list(range(a.gpus or torch.cuda.device_count()))
    peaks = measure_peaks(gpus, a.work)
    jobs = list(dict.fromkeys((shape, max_len, v) for shape, max_len, variants in a.groups
                              for v in variants))
    todo = [j for j in jobs if not finished(a.work/f'{file_name(*j)}.json')]
    left = schedule(todo, gpus, a, peaks)
    multi = run_multi_gpu(a, len(gpus)) if a.multi_gpu and not left else None
    done = [a.work/f'{file_name(*j)}.json' for j in jobs]
    results = [json.loads(f.read_text()) for f in done if f.exists()]
    summary = dict(gpu=torch.cuda.get_device_name(0), gpus=len(gpus), steps=a.steps,
                   warmup=a.warmup, versions=versions(), results=results, multi_gpu=multi)
    for shape, max_len in dict.fromkeys((shape, max_len) for shape, max_len, _ in a.groups):
        report([r for r in results if r['group'] == f'{shape}@{max_len}'], shape, max_len)
    if multi: report_multi(multi)
    a.json.write_text(json.dumps(summary, indent=1) + '\n')
    if left: print(f"\n{len(left)} job(s) not started within --stop-after: --resume goes on")


def report_multi(m: dict):
    "Print the multi-GPU figures."
    print(f"\n{m['gpus']} x {m['gpu']}: one GPU vs DDP vs FSDP-QLoRA, `qlora-rag train`, "
          f"{m['steps']} steps")
    for name, r in m['runs'].items():
        print(f"  {name:<14}" + (r.get('error') or f"{r['tokens_per_s']:>10,.0f} tokens/s "
              f"{r['peak_memory_mib'] / 1024:>6.1f} GiB per GPU  {r['checkpointing']}"))
    if 'ddp_speedup' in m: print(f"  DDP: {m['ddp_speedup']:.2f}x one GPU")
    if 'fsdp_vs_ddp_loss' in m:
        print(f"  FSDP vs DDP per-step loss: max {m['fsdp_vs_ddp_loss']['max_rel']:.2%} "
              f"over {m['fsdp_vs_ddp_loss']['steps']} steps")


def variant_env(name: str, a) -> dict:
    "The environment of variant `name`'s process: Unsloth's own packages first for (u)."
    env = dict(os.environ, HF_HUB_OFFLINE='1', TRANSFORMERS_OFFLINE='1')
    if VARIANTS[name][2].get('unsloth') and a.unsloth_path:
        env['PYTHONPATH'] = os.pathsep.join(filter(None, [a.unsloth_path, str(REPO),
                                                          env.get('PYTHONPATH')]))
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
    if not results: return
    ok = {r['variant']: r for r in results if 'error' not in r}
    first = next(iter(ok.values()), {})
    params = max((r['params'] for r in ok.values()), default=0)  # 4-bit counts can be packed
    peaks = sorted({round(r['peak_tflops']) for r in results if r.get('peak_tflops')})
    print(f"\nGPU: {first.get('gpu', '?')} (bf16 matrix peak measured: "
          f"{', '.join(f'{p:,}' for p in peaks) or '?'} TFLOP/s); Llama-shaped {shape}, NF4+DQ, "
          f"LoRA r16 all-linear, paged_adamw_8bit, seq<={max_len}")
    print(f"{'variant':<8}{'what':<44}{'tokens/s':>10}{'step s':>8}{'peak GiB':>9}{'est GiB':>8}"
          f"{'MFU':>6}{'loss vs b':>10}  checkpointing")
    for r in results:
        if 'error' in r: print(f"{r['variant']:<8}{r['desc'][:43]:<44}{r['error']:>10}"); continue
        mfu = 6 * params * r['tokens_per_s'] / (r['peak_tflops'] * 1e12)
        est = f"{r['estimate_gib']:.1f}" if r.get('estimate_gib') is not None else '-'
        gap = loss_gap(r, ok['b']) if 'b' in ok and r['packing'] else None
        gap = f'{gap:.2%}' if gap is not None else '-'
        print(f"{r['variant']:<8}{r['desc'][:43]:<44}{r['tokens_per_s']:>10,.0f}{r['step_s']:>8.2f}"
              f"{r['peak_gib']:>9.1f}{est:>8}{mfu:>6.0%}{gap:>10}  {r['checkpointing']}")
    for name in (v for v in ok if VARIANTS[v][2].get('unsloth')):
        u = ok[name]
        print(f'vs ({name}): ' + ', '.join(f"({v}) {r['tokens_per_s'] / u['tokens_per_s']:.2f}x at "
                                         f"{r['peak_gib']:.2f} GiB" for v, r in ok.items()
                                         if v != name) + f" (({name}): {u['peak_gib']:.2f} GiB)")
    if 'c' not in ok: return
    c = ok['c']['tokens_per_s']
    print('ratios: ' + ', '.join(f"(c)/({v}) = {c / ok[v]['tokens_per_s']:.2f}x"
                                 for v in ('a', 'b', 'u') if v in ok))


if __name__ == '__main__': main()
