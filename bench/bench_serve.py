"""Serving throughput and latency: batched serving vs one-at-a-time serving (`make bench-serve`).

Two `qlora-rag serve` processes in one run, one after the other, with the same model, adapter,
collection and decoding: the batching server (`serve.max_batch` 16) and a one-at-a-time server
(`--max-batch 1`, requests queue and are answered in turn). For each of 1, 4, 8 and 16 concurrent
streaming clients, the same questions (the bundled demo questions, cycled) are asked of both; each
client asks its next question as soon as its answer ends. Prints answers/s, time to first token
(p50/p95, client side: request sent to first text) and answer time (p50), the ratio of batched to
one-at-a-time answers/s at each concurrency, the ratio to sequential serving (one client, one at a
time), the hardware, and the prefill share at one client (time to first token / answer time).

    python bench/bench_serve.py [--questions 32] [--adapter DIR | --no-adapter] [--no-rag]
                                [--model M] [--json FILE]
"""
import argparse, json, statistics, sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO/'bench')]
from bench_rag import hardware
from qlora_rag.core import Config, asset, read_jsonl
from qlora_rag.serve import ServerProcess

LEVELS = (1, 4, 8, 16)


def ask(url: str, question: str, max_tokens: int) -> dict:
    "One streamed answer: seconds to first text and to the end, and the text."
    body = dict(messages=[dict(role='user', content=question)], stream=True, max_tokens=max_tokens)
    start, first, text = time.perf_counter(), None, ''
    with httpx.stream('POST', url + '/v1/chat/completions', json=body, timeout=600) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith('data: {'): continue
            delta = json.loads(line[6:])['choices']
            if delta and delta[0]['delta'].get('content'):
                first = first or time.perf_counter()
                text += delta[0]['delta']['content']
    end = time.perf_counter()
    return dict(ttft=(first or end) - start, total=end - start, text=text)


def run_level(url: str, questions: list[str], clients: int, max_tokens: int) -> dict:
    "`clients` streaming clients share the questions, each asking its next when its answer ends."
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        res = list(pool.map(lambda q: ask(url, q, max_tokens), questions))
    wall = time.perf_counter() - start
    ttft = sorted(r['ttft'] for r in res)
    return dict(clients=clients, answers=len(res), seconds=wall, answers_per_s=len(res) / wall,
                ttft_p50=statistics.median(ttft), ttft_p95=ttft[int(0.95 * (len(ttft) - 1))],
                answer_p50=statistics.median(r['total'] for r in res),
                texts=[r['text'] for r in res])


def run_server(flags: list[str], questions: list[str], max_tokens: int, label: str) -> list[dict]:
    "Every concurrency level against one server; a warm-up question first."
    with ServerProcess(*flags) as s:
        ask(s.url, questions[0], max_tokens)
        out = []
        for n in LEVELS:
            out.append(dict(run_level(s.url, questions, n, max_tokens), server=label))
            print(f"{label:>14} {n:>3} clients: {out[-1]['answers_per_s']:.2f} answers/s, "
                  f"TTFT p50 {out[-1]['ttft_p50']:.2f} s", flush=True)
        return out


def report(batched: list[dict], single: list[dict], hw: str):
    "The table: both servers per concurrency, the ratios, and the prefill share."
    seq = single[0]['answers_per_s']
    print(f"\n{hw}; {batched[0]['answers']} answers per level")
    print('| clients | server | answers/s | TTFT p50 s | TTFT p95 s | answer p50 s | '
          'vs one-at-a-time | vs sequential |')
    print('|---|---|---:|---:|---:|---:|---:|---:|')
    for b, s in zip(batched, single):
        for r in (s, b):
            print(f"| {r['clients']} | {r['server']} | {r['answers_per_s']:.2f} | "
                  f"{r['ttft_p50']:.2f} | {r['ttft_p95']:.2f} | {r['answer_p50']:.2f} | "
                  f"{r['answers_per_s'] / s['answers_per_s']:.2f}× | "
                  f"{r['answers_per_s'] / seq:.2f}× |")
    share = batched[0]['ttft_p50'] / batched[0]['answer_p50']
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
    single = run_server(flags + ['--max-batch', '1'], questions, a.max_tokens, 'one-at-a-time')
    batched = run_server(flags + ['--max-batch', '16'], questions, a.max_tokens, 'batched')
    same = sum(x == y for x, y in zip(single[0]['texts'], batched[-1]['texts']))
    report(batched, single, hw)
    print(f"answers of 16 batched clients equal to one-at-a-time answers: {same}/{a.questions}")
    for r in single + batched: r.pop('texts')
    Path(a.json).write_text(json.dumps(
        dict(hardware=hw, questions=a.questions, max_tokens=a.max_tokens, rag=not a.no_rag,
             flags=flags, same_answers=same, one_at_a_time=single, batched=batched), indent=2))


if __name__ == '__main__': main()
