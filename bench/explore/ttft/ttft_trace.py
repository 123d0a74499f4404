"""Where a request's first token waits under load: stage times inside the server, 1 and 8 clients.

Starts the continuous-batching server once per configuration named in $PROBE_CONFIGS (`default`;
`sw<seconds>`: the interpreter's switch interval; `async`: transformers' asynchronous batching,
GPU only; joined with `+`), with `trace_serve.py` loaded into it through `sitecustomize.py`, and
prints for 1 and 8 clients (twice each) the client's time to first token beside the p50/p95 of each
stage inside the server and the median decoding step.

    OUT=dir python bench/explore/ttft/ttft_trace.py ADAPTER_DIR|-   (run from the repository root)
"""
import json, os, statistics, sys
from pathlib import Path
sys.path[:0] = ['bench']
from bench_serve import percentile, run_level
from qlora_rag.core import asset, read_jsonl
from qlora_rag.serve import ServerProcess

adapter, out = sys.argv[1], Path(os.environ.get('OUT', '/tmp'))
n_q = int(os.environ.get('PROBE_Q', '48'))
configs = os.environ.get('PROBE_CONFIGS', 'default,sw0.0005,async,async+sw0.0005').split(',')
probe = str(Path(__file__).parent)
qa = [r['question'] for r in read_jsonl(asset('demo_qa.jsonl'))]
qs = [qa[i % len(qa)] for i in range(n_q)]
flags = ['--max-new-tokens', '32', '--no-rag', '--max-batch', '16']
flags += ['--adapter', adapter] if adapter != '-' else ['--no-adapter']
STAGES = [('queue', 'arrived', 't_take'), ('prep', 't_take', 't_created'),
          ('admit', 't_created', 't_sched'), ('prefill', 't_sched', 't_first'),
          ('read', 't_first', 't_read'), ('cut', 't_read', 't_send'), ('loop', 't_send', 't_loop'),
          ('server', 'arrived', 't_loop')]

def summary(lines):
    reqs = [r for r in lines if 'arrived' in r and r.get('t_sched')]
    steps = [r['step'] for r in lines if 'step' in r]
    parts = [f"{name} {1e3*percentile([r[b]-r[a] for r in reqs], .5):.0f}/"
             f"{1e3*percentile([r[b]-r[a] for r in reqs], .95):.0f}" for name, a, b in STAGES]
    return (f"  server ms p50/p95 (n={len(reqs)}): " + ', '.join(parts) +
            (f"; decode step {1e3*statistics.median(steps):.1f} ms" if steps else ''))

for cfg in configs:
    trace = out/f'trace_{cfg}.jsonl'
    switch = [p[2:] for p in cfg.split('+') if p.startswith('sw')]
    env = dict(PYTHONPATH=probe + ':' + os.environ.get('PYTHONPATH', ''),
               QLORA_RAG_TRACE=str(trace),
               QLORA_RAG_SWITCH=switch[0] if switch else '', QLORA_RAG_ASYNC='1' * ('async' in cfg))
    try: s = ServerProcess(*flags, '--batching', 'continuous', env=env).start()
    except Exception as e: print(f"{cfg}: server failed: {str(e)[-1500:]}", flush=True); continue
    with s:
        run_level(s.url, qs, 16, 32)
        for n in (1, 8, 1, 8):
            seen = len(trace.read_text().splitlines())
            r = run_level(s.url, qs, n, 32)
            lines = [json.loads(x) for x in trace.read_text().splitlines()[seen:]]
            print(f"{cfg} clients={n}: {r['answers_per_s']:.2f} ans/s, client TTFT p50 "
                  f"{r['ttft_p50']:.3f} p95 {r['ttft_p95']:.3f}, answer p50 {r['answer_p50']:.3f}",
                  flush=True)
            print(summary(lines), flush=True)
