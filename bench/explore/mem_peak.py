"""Where one `bench_train.py` variant's peak GPU memory sits: the blocks live at the peak, by site.

Runs the variant in this process (`--steps` after `--warmup`, default 2 after 2) with PyTorch's
allocator history on, replays the trace to find the moment the allocated bytes peaked, and prints
what was live then, grouped by the innermost frame of the project, TRL, PEFT, transformers,
bitsandbytes, accelerate or torch's optimizers/checkpointing that allocated it. Needs a CUDA GPU:
    python bench/explore/mem_peak.py 'c/1+off+ga2+d0+layers' --shape 1.7b
"""
import argparse, collections, json, sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import bench_train as bt

OURS = ('qlora_rag/', 'trl/', 'peft/', 'transformers/', 'bitsandbytes/', 'accelerate/',
        'torch/optim/', 'torch/utils/checkpoint', 'torch/autograd/', 'bench_train')

def site(frames: list[dict]) -> str:
    "The innermost frame from a library that says why the block exists."
    for f in frames:
        if any(k in f['filename'] for k in OURS):
            return f"{'/'.join(Path(f['filename']).parts[-2:])}:{f['line']} {f['name']}"
    return f"{Path(frames[0]['filename']).name}:{frames[0]['line']} {frames[0]['name']}" \
        if frames else '?'

def replay(trace: list[dict], until: int|None=None):
    "Replay alloc/free events up to event `until`: yields (index, allocated bytes, live blocks)."
    live, cur = {}, 0
    for i, e in enumerate(trace[:until]):
        if e['action'] == 'alloc':
            live[e['addr']] = e
            cur += e['size']
        elif e['action'] == 'free_requested' and e['addr'] in live:
            cur -= live.pop(e['addr'])['size']
        yield i, cur, live

def live_at_peak(trace: list[dict]) -> tuple[int, int, dict]:
    "The peak's event index, its bytes, and the blocks live then."
    at, peak = max(((i, cur) for i, cur, _ in replay(trace)), key=lambda t: t[1])
    *_, (_, _, live) = replay(trace, at + 1)
    return at, peak, live

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('variant')
    ap.add_argument('--shape', default='1.7b')
    ap.add_argument('--max-len', default='1024')
    ap.add_argument('--steps', default='2')
    ap.add_argument('--warmup', default='2')
    ap.add_argument('--top', type=int, default=25)
    ap.add_argument('--json', type=Path, help='write the sites and totals here')
    a = ap.parse_args(argv)
    import torch
    out = Path('/tmp/mem_peak_result.json')
    args = bt.parse(['--one', a.variant, '--shape', a.shape, '--max-len', a.max_len,
                     '--model-dir', str(bt.model_dir(a.shape)), '--out', str(out),
                     '--steps', a.steps, '--warmup', a.warmup])
    bt.ensure_model(a.shape)
    torch.cuda.memory._record_memory_history(context='alloc', stacks='python')
    bt.run_one(args)
    trace = torch.cuda.memory._snapshot()['device_traces'][0]
    torch.cuda.memory._record_memory_history(enabled=None)
    at, peak, live = live_at_peak(trace)
    sites = collections.defaultdict(lambda: [0, 0])
    for e in live.values():
        s = sites[site(e.get('frames', []))]
        s[0] += e['size']; s[1] += 1
    res = json.loads(out.read_text())
    print(f"{a.variant} on {a.shape}: bench peak {res['peak_gib']:.3f} GiB (after warm-up); "
          f"trace peak {peak / 2**30:.3f} GiB at event {at:,} of {len(trace):,}")
    rows = sorted(sites.items(), key=lambda kv: -kv[1][0])
    for name, (size, n) in rows[:a.top]:
        print(f"{size / 2**20:>9.1f} MiB {n:>6} blocks  {name}")
    if a.json:
        a.json.write_text(json.dumps(dict(variant=a.variant, shape=a.shape, bench=res,
                                          trace_peak_gib=peak / 2**30, sites=rows), indent=1))

if __name__ == '__main__': main()
