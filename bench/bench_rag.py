"""Answers/s of batched vs one-at-a-time generation with the fine-tuned adapter (`make bench-rag`).

Same run, same model, same prompts: the demo questions, each with its RAG context filled by `fit_prompt`
(chunks retrieved from the demo corpus in the database, or with --gold the question's source document, for
machines without the database), greedy decoding, 32 new tokens at most. Generation runs one question at a
time, then `--batch` at a time (left padding). Prints answers/s of both, the ratio, the hardware, and the
answer F1 of both runs (batching must not change the answers)."""
import argparse, json, os, platform, time
from pathlib import Path

def hardware() -> str:
    import torch
    if torch.cuda.is_available(): return torch.cuda.get_device_name()
    return f'{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores, {torch.get_num_threads()} threads'

def contexts(qa, gen, gold: bool, k: int):
    "Retrieved chunks per question: from the demo collection, or the source document itself with --gold."
    from langchain_core.documents import Document
    from qlora_rag.core import asset
    if gold:
        return [[(Document(page_content=(asset('corpus')/r['source']).read_text(), metadata=dict(source=r['source'], chunk=0)), 1.0)] for r in qa]
    from qlora_rag.ingest import ingest, PgVectorStore
    from qlora_rag.rag import RagChain
    ingest([asset('corpus')], 'demo')
    chain = RagChain(gen, PgVectorStore('demo'), k=k)
    return [chain.retrieve(r['question']) for r in qa]

def prefill_seconds(chain, qa, hits) -> float:
    "Time of the prompts' forward passes alone, one at a time: what batching can't remove where compute is the limit."
    import torch
    prompts = [chain._prepare(r['question'], h)[0] for r, h in zip(qa, hits)]
    t0 = time.perf_counter()
    with torch.inference_mode():
        for p in prompts: chain.gen.model(**chain.gen._encode([p]))
    if torch.cuda.is_available(): torch.cuda.synchronize()
    return time.perf_counter() - t0

def timed(chain, qa, hits):
    t0 = time.perf_counter()
    answers = chain.answer_many([r['question'] for r in qa], hits)
    return answers, time.perf_counter() - t0

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--adapter', help='adapter folder (default runs/default/adapter)')
    ap.add_argument('--model', help='base model folder (default: the one the adapter was trained on)')
    ap.add_argument('--gguf', help='convert this GGUF file to a model folder first and use it as the base')
    ap.add_argument('--batch', type=int, default=16); ap.add_argument('--k', type=int, default=3)
    ap.add_argument('--gold', action='store_true', help="use each question's source document instead of retrieval")
    ap.add_argument('--json', help='write the results here')
    a = ap.parse_args()
    from qlora_rag.core import asset, convert_gguf
    from qlora_rag.evaluate import load_qa, score
    from qlora_rag.rag import Generator, RagChain, GenParams
    model = a.model
    if a.gguf:
        model = str(Path('/tmp/bench-rag-model'))
        if not (Path(model)/'config.json').exists(): convert_gguf(Path(a.gguf), Path(model))
    gen = Generator.load(a.adapter, model=model)
    qa = load_qa(asset('demo_qa.jsonl'))
    hits = contexts(qa, gen, a.gold, a.k)
    one, many = (RagChain(gen, None, k=a.k, params=GenParams(max_new_tokens=32, batch_size=b)) for b in (1, a.batch))
    timed(many, qa[:a.batch], hits[:a.batch])  # warm-up: kernels, caches
    ans1, t1 = timed(one, qa, hits)
    ansN, tN = timed(many, qa, hits)
    tp = prefill_seconds(one, qa, hits)
    f1 = [score(qa, ans, hits, a.k, t).metrics['answer_f1'] for ans, t in ((ans1, t1), (ansN, tN))]
    same = sum(x.answer == y.answer for x, y in zip(ans1, ansN))
    res = dict(hardware=hardware(), device=str(gen.model.device), quantized=any(type(m).__name__ == 'Linear4bit' for m in gen.model.modules()), n=len(qa), batch=a.batch,
               one_at_a_time_answers_per_s=round(len(qa) / t1, 2), batched_answers_per_s=round(len(qa) / tN, 2),
               ratio=round(t1 / tN, 2), f1_one_at_a_time=f1[0], f1_batched=f1[1], identical_answers=same,
               prefill_share_one_at_a_time=round(tp / t1, 3), batching_ceiling_if_decode_were_free=round(t1 / tp, 2),
               context='gold source document' if a.gold else f'top-{a.k} retrieved chunks')
    print(f"{res['hardware']} ({res['device']}, 4-bit base: {res['quantized']}); {len(qa)} questions, {res['context']}, greedy, <=32 new tokens")
    print(f"one at a time: {res['one_at_a_time_answers_per_s']:.2f} answers/s   batch {a.batch}: {res['batched_answers_per_s']:.2f} answers/s   "
          f"ratio {res['ratio']:.2f}x")
    print(f"answer F1 one at a time {f1[0]:.3f}, batched {f1[1]:.3f}; identical answers {same}/{len(qa)}")
    print(f"prompt forward passes alone: {tp:.1f} s = {tp / t1:.0%} of one-at-a-time time -> batching can reach at most {t1 / tp:.2f}x")
    if a.json: Path(a.json).write_text(json.dumps(res, indent=2))

if __name__ == '__main__': main()
