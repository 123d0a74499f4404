"""Several GPUs through `qlora-rag train`: one GPU, DDP and FSDP-QLoRA on the same model and data.

The model is Llama-shaped 1.7B (`bench_train.SHAPES`) with random weights and the bundled SmolLM2
tokenizer (bench/smollm2), so the real command trains it on the bundled data: NF4 + double quant,
LoRA r16 on all linear layers, packing, 8 rows of <= 1,024 tokens per GPU and step, default settings
otherwise. Runs, in this order, on one machine:
- one GPU: `python -m qlora_rag.cli train ...`;
- DDP: `accelerate launch --config_file configs/accelerate/ddp.yaml -m qlora_rag.cli train ...`;
- FSDP: the same with `configs/accelerate/fsdp_qlora.yaml`.
Prints tokens/s (all GPUs together, from each run's report), peak memory per GPU, DDP's speed-up
over one GPU, and how far FSDP's per-step training loss is from DDP's on the same batches.

    python bench/multi_gpu.py [--steps 20] [--json FILE]
"""
import argparse, json, os, shutil, subprocess, sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO/'bench'))
from bench_train import SHAPES, build_model

def train(name: str, launcher: list[str], model: Path, steps: int, log: Path) -> dict:
    "One `qlora-rag train` run; its report, or the error's last lines."
    out = Path(f'/tmp/multi-{name}')
    shutil.rmtree(out, ignore_errors=True)
    args = ['train', '--model', str(model), '--output', str(out), '--max-steps', str(steps),
            '--batch-size', '8', '--max-tokens', '1024', '--logging-steps', '1',
            '--eval-fraction', '0', '--save-steps', str(10 * steps)]
    with log.open('w') as f:
        p = subprocess.run(launcher + ['-m', 'qlora_rag.cli', *args], stdout=f,
                           stderr=subprocess.STDOUT, cwd=REPO,
                           env=dict(os.environ, PYTHONPATH=os.pathsep.join(
                               filter(None, [str(REPO), os.environ.get('PYTHONPATH')]))))
    report = out/'report.json'
    if p.returncode or not report.exists():
        return dict(error=f'exit {p.returncode}: ' + ' | '.join(log.read_text().splitlines()[-4:]))
    return json.loads(report.read_text())

def loss_gap(a: dict, b: dict) -> dict:
    "Largest per-step difference between two runs' training losses, absolute and relative."
    la, lb = ({l['step']: l['loss'] for l in r['losses']} for r in (a, b))
    steps = sorted(set(la) & set(lb))
    rel = max(abs(la[s] - lb[s]) / abs(lb[s]) for s in steps)
    return dict(steps=len(steps), max_abs=max(abs(la[s] - lb[s]) for s in steps), max_rel=rel)

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--steps', type=int, default=20, help='optimizer steps per run')
    ap.add_argument('--skeleton', type=Path, default=REPO/'bench'/'smollm2')
    ap.add_argument('--logs', type=Path, default=Path('/tmp'), help="folder for each run's log")
    ap.add_argument('--runs', default='one,ddp,fsdp', help='which of one, ddp, fsdp to run')
    ap.add_argument('--json', type=Path, help='write the results here')
    a = ap.parse_args(argv)
    import torch
    model = build_model(Path('/tmp/multi-1.7b'), SHAPES['1.7b'], a.skeleton)
    n = torch.cuda.device_count()
    launch = lambda cfg: [sys.executable, '-m', 'accelerate.commands.launch', '--config_file',
                          str(REPO/cfg), '--num_processes', str(n)]
    runs = {'one': ('one GPU', ['env', 'CUDA_VISIBLE_DEVICES=0', sys.executable]),
            'ddp': (f'DDP, {n} GPUs', launch('configs/accelerate/ddp.yaml')),
            'fsdp': (f'FSDP, {n} GPUs', launch('configs/accelerate/fsdp_qlora.yaml'))}
    res = {}
    for name, launcher in (runs[r] for r in a.runs.split(',')):
        res[name] = train(name.split(',')[0].replace(' ', '-'), launcher, model, a.steps,
                          a.logs/f"multi_gpu_{name.split(',')[0].replace(' ', '_')}.log")
        r = res[name]
        print(name, r.get('error') or f"{r['tokens_per_s']:,.0f} tokens/s, "
              f"{r['peak_memory_mib'] / 1024:.1f} GiB peak per GPU, {r['checkpointing']}",
              flush=True)
    none = dict(error='not run')
    one, ddp, fsdp = (res.get(runs[r][0], none) for r in ('one', 'ddp', 'fsdp'))
    summary = dict(gpu=torch.cuda.get_device_name(), gpus=n, steps=a.steps, runs=res)
    if 'error' not in one and 'error' not in ddp:
        summary['ddp_speedup'] = ddp['tokens_per_s'] / one['tokens_per_s']
        print(f"DDP on {n} GPUs: {summary['ddp_speedup']:.2f}x one GPU")
    if 'error' not in ddp and 'error' not in fsdp:
        summary['fsdp_vs_ddp_loss'] = loss_gap(fsdp, ddp)
        print(f"FSDP vs DDP, per-step loss: {summary['fsdp_vs_ddp_loss']}")
    if a.json: a.json.write_text(json.dumps(summary, indent=1) + '\n')

if __name__ == '__main__': main()
