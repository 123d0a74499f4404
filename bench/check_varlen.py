"""Varlen vs SDPA attention on the same packed training batches (a GPU check).

Trains a Llama-shaped model (random weights, NF4 + double quant, LoRA r=16 on all linear layers)
through qlora_rag's own training path (`train.make_trainer`: data from `prepare_data`, `sft_args`,
`speedups`) twice, with the same seed and the same batches: once with `model.attn='varlen'`
(PyTorch's varlen FlashAttention on the packed-row metadata the collator sends) and once with
`model.attn='sdpa'` (transformers' own packed SDPA path: a block-diagonal mask built from the
position ids). It writes JSON with:

- the per-step training losses of both runs, and their max absolute and relative difference;
- the relative difference of the LoRA gradients of the first batch, computed with the same initial
  weights on the same batch (max over tensors, and over all tensors together). The first step's
  lora_A gradients are exactly zero in both runs, since lora_B starts at zero: they are counted, not
  compared;
- a reference: the same with `model.attn='eager'` (transformers' plain attention, a third correct
  implementation) against SDPA: the spread that bf16 rounding alone gives. The checks require the
  varlen/SDPA differences to be of the same order (at most 3x the eager/SDPA ones);
- a control: the first batch's loss and gradients with the packed row's example boundaries ignored
  (each token attends to every earlier token of the row, across examples), to show how large a
  masking error is. The checks require the varlen/SDPA difference on the first batch to be at most a
  fifth of the control's;
- that both runs trained on identical batches (a checksum of every batch), and that
  `packing.packed_metadata` derives from the position ids exactly the boundaries TRL's collator
  sent.

    python bench/check_varlen.py --json OUT.json --steps 32      # CUDA machine, about 2 minutes
    python bench/check_varlen.py --dry-run --json OUT.json       # CPU: tiny model, no varlen

The GPU machine can't receive the bundled 98 MB model, so the model is built from a config; its
tokenizer is the bundled SmolLM2 tokenizer in bench/smollm2 (`make bench/smollm2` writes it).
The random weights use an
initializer range of 0.05 (instead of 0.02), so attention is far from uniform and a masking error
moves the loss well above bf16 rounding. The exit code is 1 when a check fails.
"""
import argparse, gc, json, math, shutil, sys, tempfile, time, zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO/'bench'))
from bench_train import build_model
SMOLLM2 = REPO/'bench'/'smollm2'  # the bundled model's config and tokenizer, without weights
SHAPES = {  # Llama-shaped, grouped-query attention (4 query heads per key/value head)
    'gpu': dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=16,
                num_attention_heads=16, num_key_value_heads=4),
    'dry-run': dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2),
}
SHARE_OF_CONTROL = 0.2  # varlen/SDPA difference allowed on the first batch, share of the control's
TIMES_REFERENCE = 3  # varlen/SDPA difference allowed, in multiples of the eager/SDPA one


def make_config(model_dir: Path, out: Path, attn: str, steps: int, batch: int):
    "The run's config: the defaults (NF4, LoRA r16, packing, checkpointing) on the random model."
    from qlora_rag.core import Config
    cfg = Config()
    cfg.model.name, cfg.model.attn = str(model_dir), attn
    cfg.data.eval_fraction = 0.0
    t = cfg.train
    t.output_dir, t.max_steps, t.batch_size, t.logging_steps = str(out), steps, batch, 1
    t.save_steps = t.eval_steps = 10**6
    return cfg.check()


def checksum(batch: dict) -> list:
    "Tokens and CRCs of a batch's input ids and labels: equal checksums, equal batches."
    crc = [zlib.crc32(batch[k].detach().cpu().contiguous().numpy().tobytes())
           for k in ('input_ids', 'labels')]
    return [int(batch['input_ids'].numel()), *crc]


def ignore_boundaries(batch: dict) -> dict:
    "Packed-row metadata that makes the whole row one example (for the control)."
    import torch
    n = batch['input_ids'].shape[1]
    whole = torch.tensor([0, n], dtype=torch.int32)
    return dict(cu_seq_lens_q=whole, cu_seq_lens_k=whole, max_length_q=n, max_length_k=n)


def lora_grads(trainer, batch: dict, seed: int) -> dict:
    "The LoRA gradients of one training step on `batch`: the trainer's loss, in autocast."
    from transformers import set_seed
    model = trainer.model
    model.train()
    set_seed(seed)  # the same dropout masks in both runs
    with trainer.accelerator.autocast():
        loss = trainer.compute_loss(model, trainer._prepare_inputs(dict(batch)))
    trainer.accelerator.backward(loss)
    grads = {n: p.grad.detach().float().cpu().clone() for n, p in model.named_parameters()
             if p.requires_grad and p.grad is not None}
    model.zero_grad(set_to_none=True)
    return grads


def eval_loss(trainer, batch: dict) -> float:
    "The loss of `batch` in eval mode (no dropout)."
    import torch
    model = trainer.model
    model.eval()
    with torch.no_grad(), trainer.accelerator.autocast():
        loss = trainer.compute_loss(model, trainer._prepare_inputs(dict(batch)))
    model.train()
    return loss.item()


def first_batch_facts(trainer, first: dict) -> dict:
    "Size of the first batch, and whether `packed_metadata` agrees with what the collator sent."
    from qlora_rag.packing import packed_metadata
    meta = packed_metadata(first['position_ids'].clone())
    sent = 'cu_seq_lens_q' in first
    same = sent and (first['cu_seq_lens_q'].tolist() == meta['cu_seq_lens_q'].tolist()
                     and first['max_length_q'] == meta['max_length_q'])
    return dict(tokens=int(first['input_ids'].numel()), examples=len(meta['cu_seq_lens_q']) - 1,
                longest=meta['max_length_q'], collator_sent_metadata=sent,
                metadata_matches_collator=bool(same))


def one_run(attn: str, model_dir: Path, splits, tok, device: str, a) -> tuple[dict, dict, dict]:
    "Train `a.steps` steps with `model.attn=attn`: the run's facts, gradients, control gradients."
    import torch
    from transformers import set_seed
    from transformers.trainer_callback import ProgressCallback
    from qlora_rag.train import make_trainer
    cuda = device.startswith('cuda')
    out = Path(tempfile.mkdtemp(prefix=f'check-varlen-{attn}-'))
    cfg = make_config(model_dir, out, attn, a.steps, a.batch)
    trainer, applied, _ = make_trainer(cfg, splits, tok, device)
    trainer.args.train_sampling_strategy = 'sequential'  # the same batches, in the same order
    trainer.remove_callback(ProgressCallback)
    base = trainer.model.get_base_model()
    layer = base.model.layers[0].mlp.down_proj
    first = next(iter(trainer.get_train_dataloader()))
    res = dict(attn=attn, attn_implementation=base.config._attn_implementation, speedups=applied,
               base_layer=type(getattr(layer, 'base_layer', layer)).__name__,
               first_batch=first_batch_facts(trainer, first))
    grads, control = lora_grads(trainer, first, cfg.train.seed), {}
    res['first_batch']['eval_loss'] = eval_loss(trainer, first)
    if attn == 'varlen':
        wrong = {**first, **ignore_boundaries(first)}
        control = lora_grads(trainer, wrong, cfg.train.seed)
        res['first_batch']['eval_loss_boundaries_ignored'] = eval_loss(trainer, wrong)
    sums, compute_loss = [], trainer.compute_loss
    def recording_loss(model, inputs, *args, **kw):
        if model.training: sums.append(checksum(inputs))
        return compute_loss(model, inputs, *args, **kw)
    trainer.compute_loss = recording_loss
    set_seed(cfg.train.seed)
    if cuda: torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    trainer.train()
    if cuda: torch.cuda.synchronize()
    res.update(train_s=round(time.perf_counter() - t0, 2), steps=trainer.state.global_step,
               losses=[h['loss'] for h in trainer.state.log_history if 'loss' in h],
               peak_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
               batch_checksums=sums)
    del trainer, base, layer
    gc.collect()
    if cuda: torch.cuda.empty_cache()
    shutil.rmtree(out, ignore_errors=True)
    return res, grads, control


def compare_losses(a: list, b: list) -> dict:
    "Max absolute and relative (to the second) difference of two loss curves, step by step."
    diffs = [abs(x - y) for x, y in zip(a, b)]
    rel = [d / abs(y) for d, y in zip(diffs, b)]
    worst = max(range(len(rel)), key=rel.__getitem__) if rel else None
    return dict(steps_compared=len(diffs), max_abs_diff=max(diffs, default=math.nan),
                max_rel_diff=max(rel, default=math.nan),
                worst_step=None if worst is None else worst + 1)


def compare_grads(g: dict, ref: dict) -> dict:
    "Max over LoRA tensors of |g - ref| / |ref| (L2 norms), and the same over all tensors together."
    rel, zero, num, den = {}, 0, 0.0, 0.0
    for name, r in ref.items():
        d2, r2 = float((g[name] - r).pow(2).sum()), float(r.pow(2).sum())
        num, den = num + d2, den + r2
        if r2 == 0 and float(g[name].pow(2).sum()) == 0: zero += 1; continue
        rel[name] = math.sqrt(d2 / r2) if r2 else math.inf
    worst = max(rel, key=rel.get) if rel else None
    return dict(tensors=len(ref), compared=len(rel), zero_in_both=zero,
                max_rel_diff=rel[worst] if worst else math.nan, worst_tensor=worst,
                global_rel_diff=math.sqrt(num / den) if den else math.nan,
                same_names=sorted(g) == sorted(ref))


def versions() -> dict:
    "Versions of the libraries on the training path."
    import importlib.metadata as md
    def v(n):
        try: return md.version(n)
        except md.PackageNotFoundError: return None
    return {n: v(n) for n in ('torch', 'transformers', 'trl', 'peft', 'accelerate', 'bitsandbytes',
                              'datasets')}


def checks(a, runs: list, d: dict) -> dict:
    "Every check of the verdict. `runs`: the (facts, grads, control) of each arm; `d`: comparisons."
    first, second, third = (r[0] for r in runs)
    base = dict(same_batches=first['batch_checksums'] == second['batch_checksums']
                    == third['batch_checksums'],
                steps_run=first['steps'] == second['steps'] == third['steps'] == a.steps,
                metadata_matches_collator=first['first_batch']['metadata_matches_collator'],
                grads_same_tensors=d['grads']['same_names'] and d['reference_grads']['same_names'],
                eager_kept=third['attn_implementation'] == 'eager' and not third['speedups'])
    if a.dry_run:  # the same config twice: the harness itself must be deterministic
        return dict(base, deterministic=d['losses']['max_abs_diff'] == 0
                    and d['grads']['global_rel_diff'] == 0)
    sdpa_first = second['first_batch']['eval_loss']
    def rel(x): return abs(x - sdpa_first) / sdpa_first
    control_first = rel(first['first_batch']['eval_loss_boundaries_ignored'])
    return dict(base, varlen_applied='varlen-attention' in first['speedups']
                    and first['attn_implementation'] == 'qlora_varlen',
                sdpa_kept=second['attn_implementation'] == 'sdpa' and not second['speedups'],
                first_loss_within_control=rel(first['first_batch']['eval_loss'])
                    <= SHARE_OF_CONTROL * control_first,
                grads_within_control=d['grads']['global_rel_diff']
                    <= SHARE_OF_CONTROL * d['control_grads']['global_rel_diff'],
                losses_like_reference=d['losses']['max_rel_diff']
                    <= TIMES_REFERENCE * d['reference_losses']['max_rel_diff'],
                grads_like_reference=d['grads']['global_rel_diff']
                    <= TIMES_REFERENCE * d['reference_grads']['global_rel_diff'])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--json', default='check_varlen.json', help='where to write the results')
    ap.add_argument('--steps', type=int, default=32, help='training steps of each run (GPU: >= 30)')
    ap.add_argument('--batch', type=int, default=8, help='packed rows of data.max_tokens per step')
    ap.add_argument('--dry-run', action='store_true',
                    help='CPU: tiny model, SDPA twice, then eager (checks the harness only)')
    ap.add_argument('--model-dir', help='build (or reuse) the random model here')
    a = ap.parse_args(argv)
    import torch, datasets, transformers
    datasets.disable_progress_bars(); transformers.logging.set_verbosity_error()
    from qlora_rag.core import DataConfig, pick_device
    from qlora_rag.data import prepare_data
    from qlora_rag.model import load_tokenizer
    if not a.dry_run and not torch.cuda.is_available():
        ap.error('no CUDA GPU here: varlen attention needs one (--dry-run checks the CPU side)')
    if not a.dry_run and a.steps < 30: ap.error('--steps must be at least 30 on the GPU')
    t0, device = time.perf_counter(), 'cpu' if a.dry_run else pick_device('cuda')
    first_attn, shape = ('sdpa', 'dry-run') if a.dry_run else ('varlen', 'gpu')
    model_dir = Path(a.model_dir or tempfile.mkdtemp(prefix='check-varlen-model-'))
    llama = dict(SHAPES[shape], vocab_size=49152, max_position_embeddings=2048,
                 tie_word_embeddings=True, bos_token_id=1, eos_token_id=2)
    build_model(model_dir, llama, SMOLLM2, init_range=0.05)
    tok = load_tokenizer(str(model_dir))
    splits, data_report = prepare_data(DataConfig(eval_fraction=0.0), tok)
    runs = [one_run(attn, model_dir, splits, tok, device, a)
            for attn in (first_attn, 'sdpa', 'eager')]
    (r1, g1, control), (r2, g2, _), (r3, g3, _) = runs
    d = dict(losses=compare_losses(r1['losses'], r2['losses']), grads=compare_grads(g1, g2),
             reference_losses=compare_losses(r3['losses'], r2['losses']),
             reference_grads=compare_grads(g3, g2),
             control_grads=compare_grads(control, g2) if control else None)
    verdict = checks(a, runs, d)
    names = [f'{i}:{r["attn"]}' for i, r in enumerate((r1, r2, r3))]
    result = dict(
        dry_run=a.dry_run, device=torch.cuda.get_device_name() if device != 'cpu' else 'cpu',
        versions=versions(), shape=SHAPES[shape], steps=a.steps, batch=a.batch,
        examples=data_report.kept,
        limits=dict(share_of_control=SHARE_OF_CONTROL, times_reference=TIMES_REFERENCE),
        loss_diff=d['losses'], grad_diff_first_step=d['grads'],
        reference_eager_vs_sdpa=dict(loss_diff=d['reference_losses'],
                                     grad_diff=d['reference_grads']),
        control_boundaries_ignored=dict(grad_diff=d['control_grads']),
        first_batch={n: r['first_batch'] for n, r in zip(names, (r1, r2, r3))},
        runs={n: {k: v for k, v in r.items() if k != 'first_batch'}
              for n, r in zip(names, (r1, r2, r3))},
        checks=verdict, ok=all(verdict.values()), wall_s=round(time.perf_counter() - t0, 1))
    Path(a.json).write_text(json.dumps(result, indent=1))
    summary = ('device', 'loss_diff', 'grad_diff_first_step', 'reference_eager_vs_sdpa',
               'control_boundaries_ignored', 'first_batch', 'checks', 'ok', 'wall_s')
    print(json.dumps({k: result[k] for k in summary}, indent=1))
    print(f"{'step':>4}" + ''.join(f'{n:>14}' for n in names))
    for i, row in enumerate(zip(r1['losses'], r2['losses'], r3['losses']), 1):
        print(f'{i:>4}' + ''.join(f'{x:>14.5f}' for x in row))
    if not a.model_dir: shutil.rmtree(model_dir, ignore_errors=True)
    return 0 if result['ok'] else 1


if __name__ == '__main__': sys.exit(main())
