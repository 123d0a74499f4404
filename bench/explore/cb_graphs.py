"""Continuous batching on one GPU: decode speed and answers with and without CUDA graphs.

Loads the served model (4-bit base + the adapter given, or the bundled base alone) and, for each
configuration named on the command line, starts transformers' continuous batching manager, asks
1, 1 (again, shapes now captured), 8 and 16 demo questions at once (≤32 new tokens, greedy) and
prints the wall time, tokens/s and the slowest first token; then how many answers equal the first
configuration's.

    python bench/explore/cb_graphs.py ADAPTER CONFIG [CONFIG ...]

Configurations: plain (no graphs), graphs (transformers' default padding: 64 new, 16,384 cached
tokens), graphs_async (the same with asynchronous batching), graphs_kv1024, graphs_kv256,
graphs_q256_kv1024 (the server's choice).
"""
import sys, time
from transformers import ContinuousBatchingConfig, GenerationConfig
from qlora_rag.core import Config, asset, read_jsonl
from qlora_rag.generate import Generator, generate_kwargs, end_token_ids

CONFIGS = dict(plain={}, graphs=dict(use_cuda_graph=True),
               graphs_async=dict(use_cuda_graph=True, use_async_batching=True),
               graphs_kv1024=dict(use_cuda_graph=True, kv_padding_interval_size=1024),
               graphs_kv256=dict(use_cuda_graph=True, kv_padding_interval_size=256),
               graphs_q256_kv1024=dict(use_cuda_graph=True, kv_padding_interval_size=1024,
                                       q_padding_interval_size=256))


def run(model, ids, gen, ends, name) -> dict:
    "Answers per batch size under one configuration, with its speed printed."
    cb = ContinuousBatchingConfig(max_requests_per_batch=16, num_blocks=128, page_size=256,
                                  max_batch_tokens=2048, auto_switch_to_flash=False,
                                  **CONFIGS[name])
    mgr = model.init_continuous_batching(gen, cb)
    t = time.perf_counter(); mgr.warmup()
    print(name, 'warmup', round(time.perf_counter() - t, 2))
    mgr.start(); res = {}
    for n in (1, 1, 8, 16):
        t = time.perf_counter(); first, outs = {}, {}
        for i in range(n):
            mgr.add_request(ids[i], f'{n}-{i}-{t}', 32, streaming=True, eos_token_id=ends)
        while len(outs) < n:
            if (o := mgr.get_result(timeout=30)) is None: print(name, 'TIMEOUT'); break
            first.setdefault(o.request_id, time.perf_counter() - t)
            if o.is_finished(): outs[o.request_id] = o.generated_tokens
        dt = time.perf_counter() - t
        toks = sum(len(v) for v in outs.values())
        print(f'{name} n={n}: {dt:.3f} s, {toks} tokens, {toks / dt:.0f} tok/s, '
              f'first token max {max(first.values()):.3f} s', flush=True)
        res[n] = [outs.get(f'{n}-{i}-{t}') for i in range(n)]
    mgr.stop(block=True, timeout=30)
    model.destroy_cached_continuous_batching_manager()
    return res


def main(adapter: str, names: list[str]):
    g = Generator.load(adapter=adapter or None)
    tok = g.tokenizer
    print(g.model.device, type(g.model).__name__, flush=True)
    qs = [r['question'] for r in read_jsonl(asset('demo_qa.jsonl'))][:16]
    ids = [tok(tok.apply_chat_template([dict(role='user', content=q)], tokenize=False,
                                       add_generation_prompt=True)).input_ids for q in qs]
    gen = GenerationConfig(**generate_kwargs(Config().gen, tok))
    ends = sorted(set(end_token_ids(tok)))
    first = run(g.model, ids, gen, ends, names[0])
    for name in names[1:]:
        try: r = run(g.model, ids, gen, ends, name)
        except Exception as e: print(name, 'FAILED', type(e).__name__, str(e)[:300]); continue
        for n in (8, 16):
            print(name, n, f'same as {names[0]}:', sum(a == b for a, b in zip(r[n], first[n])),
                  '/', n)


if __name__ == '__main__': main(sys.argv[1], sys.argv[2:])
