"""Serving speed: continuous and static batching vs one answer at a time (`make bench-serve`).

Three `qlora-rag serve` processes in one run, one after the other, with the same model, adapter,
collection and decoding: one-at-a-time (`--batching static --max-batch 1`: requests queue and are
answered in turn), static batching (`--batching static`: requests arriving during a batch form the
next one) and continuous batching (`--batching continuous`: a request joins the running batch at
the next token). For each of 1, 4, 8 and 16 concurrent streaming clients, the same questions (the
bundled demo questions, cycled) are asked of each; each client asks its next question as soon as
its answer ends. The clients are coroutines of one asyncio loop sharing one pool of kept-alive
connections, as an application's would be (client threads, each making its own connection, spent
~30 ms of CPU per request on the client side and counted it as time to first token). Each server
first answers every question once at 16 clients, a warm-up (a server with CUDA graphs captures one
graph per batch shape the first time it meets it). Prints
answers/s, time to first token (p50/p95, client side: request sent to first text) and answer time
(p50), each server's ratio to one-at-a-time at the same concurrency and to sequential serving (one
client, one at a time), p95 time to first token against the same server's at one client and against
sequential serving's, the hardware, and the prefill share at one client (TTFT / answer time).

    python bench/bench_serve.py [--questions 32] [--adapter DIR | --no-adapter] [--no-rag]
                                [--model M] [--json FILE]
"""
import argparse, asyncio, json, statistics, sys, time
from pathlib import Path
import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO/'bench')]
from bench_rag import hardware
from qlora_rag.core import Config, asset, read_jsonl
from qlora_rag.serve import ServerProcess

LEVELS = (1, 4, 8, 16)


async def ask(client: httpx.AsyncClient, question: str, max_tokens: int) -> dict:
    "One streamed answer: seconds to first text and to the end, and the text."
    body = dict(messages=[dict(role='user', content=question)], stream=True, max_tokens=max_tokens)
    start, first, text = time.perf_counter(), None, ''
    async with client.stream('POST', '/v1/chat/completions', json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith('data: {'): continue
            delta = json.loads(line[6:])['choices']
            if delta and delta[0]['delta'].get('content'):
                first = first or time.perf_counter()
                text += delta[0]['delta']['content']
    end = time.perf_counter()
    return dict(ttft=(first or end) - start, total=end - start, text=text)


async def ask_all(url: str, questions: list[str], clients: int, max_tokens: int):
    "The answers, in order, of `clients` clients sharing the questions; and the seconds it took."
    todo, res = iter(enumerate(questions)), [{}] * len(questions)
    async def client_asks(client):
        for i, q in todo: res[i] = await ask(client, q, max_tokens)
    pool = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=pool) as client:
        start = time.perf_counter()
        await asyncio.gather(*(client_asks(client) for _ in range(clients)))
        return res, time.perf_counter() - start


def percentile(xs, p: float) -> float:
    "The `p` quantile of `xs` (0-1), the nearest rank at or below it."
    xs = sorted(xs); return xs[int(p * (len(xs) - 1))]


def run_level(url: str, questions: list[str], clients: int, max_tokens: int) -> dict:
    "`clients` streaming clients share the questions, each asking its next when its answer ends."
    res, wall = asyncio.run(ask_all(url, questions, clients, max_tokens))
    ttft = [r['ttft'] for r in res]
    return dict(clients=clients, answers=len(res), seconds=wall, answers_per_s=len(res) / wall,
                ttft_p50=statistics.median(ttft), ttft_p95=percentile(ttft, 0.95),
                answer_p50=statistics.median(r['total'] for r in res),
                texts=[r['text'] for r in res])


def run_server(flags: list[str], questions: list[str], max_tokens: int, label: str) -> list[dict]:
    "Every concurrency level against one server, after a warm-up pass of the questions."
    with ServerProcess(*flags) as s:
        run_level(s.url, questions, LEVELS[-1], max_tokens)  # CUDA graphs are captured by shape
        out = []
        for n in LEVELS:
            out.append(dict(run_level(s.url, questions, n, max_tokens), server=label))
            print(f"{label:>14} {n:>3} clients: {out[-1]['answers_per_s']:.2f} answers/s, "
                  f"TTFT p50 {out[-1]['ttft_p50']:.2f} s", flush=True)
        return out


SERVERS = {'one-at-a-time': ['--batching', 'static', '--max-batch', '1'],
           'static': ['--batching', 'static', '--max-batch', '16'],
           'continuous': ['--batching', 'continuous', '--max-batch', '16']}


def report(runs: dict[str, list[dict]], hw: str):
    "The table: every server per concurrency, the ratios, and the prefill share."
    single = runs['one-at-a-time']
    seq = single[0]['answers_per_s']
    print(f"\n{hw}; {single[0]['answers']} answers per level")
    print('| clients | server | answers/s | TTFT p50 s | TTFT p95 s | answer p50 s | '
          'vs one-at-a-time | vs sequential | TTFT p95 vs 1 client | TTFT p95 vs sequential |')
    print('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|')
    for i, s in enumerate(single):
        for rs in runs.values():
            r = rs[i]
            print(f"| {r['clients']} | {r['server']} | {r['answers_per_s']:.2f} | "
                  f"{r['ttft_p50']:.2f} | {r['ttft_p95']:.2f} | {r['answer_p50']:.2f} | "
                  f"{r['answers_per_s'] / s['answers_per_s']:.2f}× | "
                  f"{r['answers_per_s'] / seq:.2f}× | {r['ttft_p95'] / rs[0]['ttft_p95']:.2f}× | "
                  f"{r['ttft_p95'] / single[0]['ttft_p95']:.2f}× |")
    share = single[0]['ttft_p50'] / single[0]['answer_p50']
    print(f"prefill share at one client (TTFT / answer time, p50): {share:.0%}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--questions', type=int, default=32, help='answers per concurrency level')
    ap.add_argument('--max-tokens', type=int, default=32, help='longest answer, in tokens')
    ap.add_argument('--adapter', default='', help='adapter or run folder (default: the run in '
                    'train.output_dir)')
    ap.add_argument('--no-adapter', action='store_true', help='serve the base model alone')
    ap.add_argument('--no-rag', action='store_true', help='answer without retrieval')
    ap.add_argument('--model', default='', help='base model (default: the adapter\'s, or bundled)')
    ap.add_argument('--collection', default='bench_serve', help='collection, filled if missing')
    ap.add_argument('--json', default='bench_serve.json', help='where to write the results')
    a = ap.parse_args(argv)
    qa = [r['question'] for r in read_jsonl(asset('demo_qa.jsonl'))]
    questions = [qa[i % len(qa)] for i in range(a.questions)]
    flags = ['--max-new-tokens', str(a.max_tokens)]
    flags += ['--no-adapter'] if a.no_adapter else ['--adapter', a.adapter] if a.adapter else []
    if a.model: flags += ['--model', a.model]
    if a.no_rag: flags.append('--no-rag')
    else:
        from qlora_rag.pipeline import ingest_corpus
        cfg = Config(); cfg.store.collection = a.collection
        ingest_corpus([asset('corpus')], cfg)
        flags += ['--collection', a.collection]
    hw = hardware()
    runs = {name: run_server(flags + extra, questions, a.max_tokens, name)
            for name, extra in SERVERS.items()}
    report(runs, hw)
    alone = runs['one-at-a-time'][0]['texts']
    same = {name: sum(x == y for x, y in zip(alone, rs[-1]['texts'])) for name, rs in runs.items()}
    for name in ('static', 'continuous'):
        print(f"answers of 16 {name} clients equal to one-at-a-time answers: "
              f"{same[name]}/{a.questions}")
    differ = {name: [[x, y] for x, y in zip(alone, rs[-1]['texts']) if x != y]
              for name, rs in runs.items()}
    for r in (r for rs in runs.values() for r in rs): r.pop('texts')
    Path(a.json).write_text(json.dumps(
        dict(hardware=hw, questions=a.questions, max_tokens=a.max_tokens, rag=not a.no_rag,
             flags=flags, same_answers=same, differences=differ, servers=runs), indent=2))


if __name__ == '__main__': main()
