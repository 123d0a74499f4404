"""Can the reader's own probabilities pick its right answers? (Measured on dev: they cannot.)

For every dev question of bench/qa/python_docs_qa.jsonl, with the chunks hybrid search returns
(k = 5, the manual's collection that `make bench-quality` fills), an adapter answers:
- once from all the chunks together (greedy, the project's way), and
- once from each chunk alone: the candidates. The training data teaches "The context does not say."
  for contexts without the answer, so a chunk read alone can say so.
Then every candidate is scored by the log-probability the adapter gives it (through the end token)
after the full prompt, and after the prompt without context (the difference is the candidate's
pointwise mutual information with the context). Several rules pick one answer per question; each
is scored like the benchmark (F1, answer contained, exact match, 95% bootstrap intervals), beside
the oracle that picks the best candidate with the reference in hand: what a perfect selector gets.

    python bench/explore/reader_select.py --adapter DIR --json bench/results/reader_select_dev.json
"""
import argparse, json, sys
from pathlib import Path

import torch

from qlora_rag import db
from qlora_rag.core import Config
from qlora_rag.evaluate import answer_metrics, contains, load_qa, with_ci
from qlora_rag.generate import Generator
from qlora_rag.prompt import build_prompt, is_no_answer
from qlora_rag.store import PgVectorStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/
from bench_rag import hardware  # noqa: E402
from raft_sweep import evaluation_names  # noqa: E402

def log_prob(gen: Generator, before: list[int], answer: str) -> float:
    "log P(answer, then the end token | the prompt's tokens `before`) under `gen`'s model."
    tok = gen.tokenizer
    ids = tok(answer, add_special_tokens=False)['input_ids'] + [tok.eos_token_id]
    with torch.inference_mode():
        logits = gen.model(torch.tensor([before + ids])).logits[0, len(before) - 1:-1]
    return float(torch.log_softmax(logits.float(), -1)[torch.arange(len(ids)), ids].sum())

def read(gen: Generator, question: str, chunks: list[str]) -> dict:
    "The answer from all chunks, one per chunk alone, and each distinct answer's two log-probs."
    def prompt(context): return build_prompt(question, context, gen.style, gen.tokenizer)
    def ids(text): return gen.tokenizer(text, add_special_tokens=False)['input_ids']
    whole = prompt('\n\n'.join(chunks))
    together, bare = ids(whole), ids(prompt(''))
    full, *alone = gen.generate([whole] + [prompt(c) for c in chunks])
    answers = [a for a in dict.fromkeys([full] + alone) if a.strip() and not is_no_answer(a)]
    return dict(full=full, alone=alone, candidates=[
        dict(answer=a, lp=log_prob(gen, together, a), lp_bare=log_prob(gen, bare, a))
        for a in answers])

def highest(score):
    "A rule: the candidate with the highest `score`, else the answer from all chunks."
    def rule(row: dict, reference: str) -> str:
        return max(row['candidates'], key=score)['answer'] if row['candidates'] else row['full']
    return rule

def first_answer_alone(n: int|None):
    "A rule: the best-ranked of the first `n` chunks whose reading answers, else all chunks'."
    def rule(row: dict, reference: str) -> str:
        return next((a for a in row['alone'][:n] if a.strip() and not is_no_answer(a)), row['full'])
    return rule

def oracle(row: dict, reference: str) -> str:
    "The candidate closest to the reference: what a perfect selector would pick."
    answers = [row['full']] + [c['answer'] for c in row['candidates']]
    return max(answers, key=lambda a: answer_metrics(a, reference)['f1'])

RULES = {'all chunks together, greedy (the project)': lambda row, reference: row['full'],
         'highest log-prob after the full prompt': highest(lambda c: c['lp']),
         'highest pointwise mutual information': highest(lambda c: c['lp'] - c['lp_bare']),
         'best-ranked chunk alone, else together': first_answer_alone(1),
         'best-ranked chunk whose reading answers, else together': first_answer_alone(None),
         'oracle: the best candidate, reference in hand': oracle}

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--adapter', required=True, help='adapter (or run) folder')
    ap.add_argument('--trained-on', default='', help="the adapter's training set, for the JSON")
    ap.add_argument('--collection', default='pydocs_c200_o30', help="the manual's collection")
    ap.add_argument('--json', type=Path, help='write the results here')
    a = ap.parse_args(argv)
    db.start_embedded()
    cfg, store = Config(), PgVectorStore(a.collection)
    qa = [r for r in load_qa('bench/qa/python_docs_qa.jsonl') if r.get('split') == 'dev']
    gen = Generator.load(a.adapter, device='cpu')
    chunks = [[d.page_content for d, _ in store.retrieve_with_scores(r['question'], cfg.rag)]
              for r in qa]
    rows = [read(gen, r['question'], cs) for r, cs in zip(qa, chunks)]
    results = {}
    for name in RULES:
        answers = [RULES[name](row, r['answer']) for row, r in zip(rows, qa)]
        scores = with_ci([answer_metrics(x, r['answer']) for x, r in zip(answers, qa)])
        said_no = sum(map(is_no_answer, answers)) / len(answers)
        results[name] = dict(evaluation_names(scores), said_no=said_no)
        print(f"{name:48s} F1 {scores['f1']:.3f} contains {scores['contains']:.3f}")
    alone = [x for row in rows for x in row['alone']]
    if a.json: a.json.write_text(json.dumps(dict(
        hardware=hardware(), trained_on=a.trained_on, questions=len(qa), k=cfg.rag.k,
        search_type=cfg.rag.search_type,
        chunks_read_alone=len(alone), alone_said_no=sum(map(is_no_answer, alone)),
        chunks_hold_reference=int(sum(contains(c, r['answer'])
                                      for r, cs in zip(qa, chunks) for c in cs)),
        candidates_per_question=sum(len(r['candidates']) for r in rows) / len(rows),
        results=results), indent=1) + '\n')

if __name__ == '__main__': main()
