"""Answers/s of batched vs one-at-a-time generation with the fine-tuned adapter (`make bench-rag`).

Same run, same model, same prompts: the demo questions, each with its RAG context filled by
`fit_prompt` (chunks retrieved from the demo corpus in the database, or with --gold the question's
source document, for machines without the database), greedy decoding, 32 new tokens at most.
Generation runs one question at a time, then `--batch` at a time (left padding). Prints answers/s of
both, the ratio, the hardware, and the answer F1 of both runs (batching must not change the
answers)."""
import argparse, json, os, platform, time
from dataclasses import replace
from pathlib import Path

def hardware() -> str:
    import torch
    if torch.cuda.is_available(): return torch.cuda.get_device_name()
    return (f'{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores, '
            f'{torch.get_num_threads()} threads')

def contexts(qa, gen, gold: bool, cfg):
    "Chunks per question: retrieved from the demo collection, or with --gold the source document."
    from langchain_core.documents import Document
    from qlora_rag.core import asset
    if gold:
        def page(r): return Document((asset('corpus')/r['source']).read_text(),
                                     metadata=dict(source=r['source'], chunk=0))
        return [[(page(r), 1.0)] for r in qa]
    from qlora_rag.ingest import ingest
    from qlora_rag.rag import RagChain
    from qlora_rag.store import PgVectorStore
    store = PgVectorStore.from_config(cfg)
    ingest([asset('corpus')], cfg.store.collection, embeddings=store.embeddings)
    chain = RagChain(gen, store, cfg.rag)
    return [chain.retrieve(r['question']) for r in qa]

def prefill_seconds(chain, qa, hits) -> float:
    "The prompts' forward passes alone, one at a time: what batching can't remove."
    import torch
    gen = chain.generator
    prompts = [chain.prepare(r['question'], h)[0] for r, h in zip(qa, hits)]
    t0 = time.perf_counter()
    with torch.inference_mode():
        for p in prompts: gen.model(**gen.tokenizer([p], return_tensors='pt').to(gen.model.device))
    if torch.cuda.is_available(): torch.cuda.synchronize()
    return time.perf_counter() - t0

def timed(chain, qa, hits):
    t0 = time.perf_counter()
    answers = chain.answer_many([r['question'] for r in qa], hits)
    return answers, time.perf_counter() - t0

def parse_args(argv=None):
    from qlora_rag.core import GenConfig, RagConfig
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--adapter', help='adapter or run folder (default: train.output_dir)')
    ap.add_argument('--model', help='base model (default: the one the adapter was trained on)')
    ap.add_argument('--quant', choices=('4bit', '8bit', 'none'),
                    help='base quantization (default: model.quant)')
    ap.add_argument('--gguf', help='convert this GGUF file to a model folder; use it as the base')
    ap.add_argument('--batch', type=int, default=GenConfig().batch_size, help='questions per batch')
    ap.add_argument('--k', type=int, default=RagConfig().k, help='chunks retrieved per question')
    ap.add_argument('--max-new-tokens', type=int, default=32, help='longest answer, in tokens')
    ap.add_argument('--collection', default='demo', help='collection for the demo corpus')
    ap.add_argument('--gold', action='store_true',
                    help="use each question's source document instead of retrieval")
    ap.add_argument('--json', help='write the results here')
    return ap.parse_args(argv)

def main(argv=None):
    a = parse_args(argv)
    from qlora_rag.core import Config, asset, convert_gguf
    from qlora_rag.evaluate import load_qa, score
    from qlora_rag.generate import Generator
    from qlora_rag.rag import RagChain
    cfg = Config().set('store.collection', a.collection).set('rag.k', a.k)
    cfg.set('gen.max_new_tokens', a.max_new_tokens).set('rag.adapter', a.adapter or '')
    if a.quant: cfg.set('model.quant', a.quant)
    if a.gguf:
        model = Path('/tmp/bench-rag-model')
        if not (model/'config.json').exists(): convert_gguf(Path(a.gguf), model)
        cfg.set('model.name', str(model))
    elif a.model: cfg.set('model.name', a.model)
    gen = Generator.from_config(cfg)
    qa = load_qa(asset('demo_qa.jsonl'))
    hits = contexts(qa, gen, a.gold, cfg)
    one, many = (RagChain(gen, None, cfg.rag, replace(cfg.gen, batch_size=b)) for b in (1, a.batch))
    timed(many, qa[:a.batch], hits[:a.batch])  # warm-up: kernels, caches
    ans1, t1 = timed(one, qa, hits)
    ansN, tN = timed(many, qa, hits)
    tp = prefill_seconds(one, qa, hits)
    f1 = [score(qa, ans, hits, a.k, t).metrics['answer_f1'] for ans, t in ((ans1, t1), (ansN, tN))]
    same = sum(x.answer == y.answer for x, y in zip(ans1, ansN))
    quantized = any(type(m).__name__ == 'Linear4bit' for m in gen.model.modules())
    res = dict(hardware=hardware(), device=str(gen.model.device), quantized=quantized, n=len(qa),
               batch=a.batch, one_at_a_time_answers_per_s=round(len(qa) / t1, 2),
               batched_answers_per_s=round(len(qa) / tN, 2), ratio=round(t1 / tN, 2),
               f1_one_at_a_time=f1[0], f1_batched=f1[1], identical_answers=same,
               prefill_share_one_at_a_time=round(tp / t1, 3),
               batching_ceiling_if_decode_were_free=round(t1 / tp, 2),
               context='gold source document' if a.gold else f'top-{a.k} retrieved chunks')
    print(f"{res['hardware']} ({res['device']}, 4-bit base: {quantized}); {len(qa)} questions, "
          f"{res['context']}, greedy, <={a.max_new_tokens} new tokens")
    print(f"one at a time: {res['one_at_a_time_answers_per_s']:.2f} answers/s   batch {a.batch}: "
          f"{res['batched_answers_per_s']:.2f} answers/s   ratio {res['ratio']:.2f}x")
    print(f"answer F1 one at a time {f1[0]:.3f}, batched {f1[1]:.3f}; "
          f"identical answers {same}/{len(qa)}")
    print(f"prompt forward passes alone: {tp:.1f} s = {tp / t1:.0%} of one-at-a-time time -> "
          f"batching can reach at most {t1 / tp:.2f}x")
    if a.json: Path(a.json).write_text(json.dumps(res, indent=2))

if __name__ == '__main__': main()
