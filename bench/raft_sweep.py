"""Which retrieval-aware training data reads a real manual best: an adapter per setting, dev set.

Three steps, so the training can run on a GPU machine without the database or the embedder:
- `data DIR` (here): writes one training set per setting of `variants()` (RaftSettings: passages per
  context, share without the answer, passage length; `--rows` examples each, default the bundled
  set's 1,000) and `contexts.jsonl`, the dev questions of
  bench/qa/python_docs_qa.jsonl with the chunks retrieval hands the model (from the collection that
  `make bench-quality` fills; the manual's text stays in DIR, outside the repository);
- `train DIR` (GPU): trains an adapter per setting (or those named by `--only`) with the default
  training config and writes each one's answers to the dev questions, with and without the retrieved
  chunks, to `answers/NAME.jsonl`;
- `score DIR` (here): exact match, token F1 and answer-contains with 95% intervals per setting.
"""
import argparse, json, re, shutil, time
from dataclasses import asdict
from pathlib import Path

from bench_rag import hardware

def variants(rows: int=1000):
    "Setting name -> RaftSettings; a name ends in `_nROWS` where the set is not 1,000 examples."
    from qlora_rag.synth import RaftSettings
    short, tag = (60, 160), '' if rows == 1000 else f'_n{rows}'
    named = {'k2-4_na15_w60-160': RaftSettings(words=short),
             'k3-5_na15_w60-160': RaftSettings(k=(3, 4, 5), words=short),
             'k2-4_na30_w60-160': RaftSettings(no_answer=0.3, words=short),
             'k2-4_na15_w120-300': RaftSettings(words=(120, 300)),
             'k3-5_na15_w120-300': RaftSettings(k=(3, 4, 5), words=(120, 300)),
             # one passage, half without the answer: a reader of one chunk at a time
             'k1_na50_w120-300': RaftSettings(k=(1,), no_answer=0.5, words=(120, 300))}
    return {name + tag: raft for name, raft in named.items()}

def write_jsonl(path: Path, rows):
    path.write_text(''.join(json.dumps(r, ensure_ascii=False) + '\n' for r in rows))

def make_data(d: Path, collection: str, split: str, rows: int, only: list[str]):
    from qlora_rag.core import Config
    from qlora_rag.evaluate import load_qa
    from qlora_rag.store import PgVectorStore
    from qlora_rag.synth import make_training_set
    d.mkdir(parents=True, exist_ok=True)
    for name, raft in variants(rows).items():
        if (not only or name in only) and not (d/f'{name}.jsonl').exists():
            write_jsonl(d/f'{name}.jsonl', make_training_set(rows, raft=raft))
    cfg = Config()
    store = PgVectorStore(collection)
    qa = [r for r in load_qa('bench/qa/python_docs_qa.jsonl') if r.get('split') == split]
    rows = [dict(r, context='\n\n'.join(doc.page_content for doc, _ in
                                         store.retrieve_with_scores(r['question'], cfg.rag)))
            for r in qa]
    write_jsonl(d/'contexts.jsonl', rows)
    print(f'training sets and {len(rows)} contexts in {d}')

def answer_all(d: Path, name: str, gen, qa: list[dict]):
    "`gen`'s answers to every question, with and without its chunks, in answers/NAME.jsonl."
    from qlora_rag.prompt import build_prompt
    def prompts(rag): return [build_prompt(r['question'], r['context'] if rag else '', gen.style,
                                           gen.tokenizer) for r in qa]
    answers = {m: gen.generate(prompts(m == 'rag')) for m in ('rag', 'norag')}
    rows = [dict(variant=name, question=r['question'], answer=r['answer'],
                 answers={m: answers[m][i] for m in answers}) for i, r in enumerate(qa)]
    (d/'answers').mkdir(exist_ok=True)
    write_jsonl(d/'answers'/f'{name}.jsonl', rows)

def setting(text: str) -> tuple[str, object]:
    "A `--set KEY=VALUE`: the value a JSON number, boolean or list where it parses as one."
    key, eq, value = text.partition('=')
    if not eq: raise argparse.ArgumentTypeError(f'{text!r} is not KEY=VALUE')
    try: return key, json.loads(value)
    except json.JSONDecodeError: return key, value

def train_all(d: Path, base: str, out: Path|None, steps: int, only: list[str],
              sets: tuple[tuple[str, object], ...]=(), tag: str=''):
    import torch
    from qlora_rag.core import Config
    from qlora_rag.generate import Generator
    from qlora_rag.train import train
    qa = [json.loads(l) for l in (d/'contexts.jsonl').open()]
    report = dict(hardware=hardware(), steps=steps, variants={})
    # The baselines: the base model with each prompt style (once per folder)
    for style in [s for s in ('plain', 'chat') if not (d/'answers'/f'base-{s}.jsonl').exists()]:
        cfg = Config()
        cfg.model.name, cfg.rag.base_only, cfg.rag.prompt = base, True, style
        answer_all(d, f'base-{style}', Generator.from_config(cfg), qa)
    todo = only or [n for n in variants() if (d/f'{n}.jsonl').exists()]
    for data, name in [(n, n + tag) for n in todo if not (d/'runs'/(n + tag)).exists()]:
        cfg = Config()
        cfg.data.source, cfg.model.name = str(d/f'{data}.jsonl'), base
        cfg.train.output_dir = str(d/'runs'/name)
        # The same number of steps for every setting; long passages must not be dropped
        cfg.train.max_steps, cfg.data.max_tokens = steps, 2048
        for key, value in sets: cfg.set(key, value)
        t0 = time.time()
        run = train(cfg)
        answer_all(d, name, Generator.from_config(cfg), qa)
        report['variants'][name] = dict(seconds=round(time.time() - t0, 1), steps=run.steps,
                                        train_s=run.train_time_s, losses=run.losses, data=data,
                                        config=[f'{k}={v}' for k, v in sets])
        if out:  # after each setting, so a cut-off run still returns what it finished
            from safetensors.torch import load_file, save_file  # float16: small enough to travel
            w = load_file(str(Path(cfg.train.output_dir)/'adapter'/'adapter_model.safetensors'))
            save_file({k: v.half() for k, v in w.items()}, str(out/f'{name}.safetensors'))
            (out/f'train_report_{name}.json').write_text(json.dumps(report, indent=1))
            shutil.copy(d/'answers'/f'{name}.jsonl', out/f'answers_{name}.jsonl')
        torch.cuda.empty_cache()

def evaluation_names(m: dict) -> dict:
    "Metric names as the evaluation reports them: 'f1' -> 'answer_f1', also inside 'ci95'."
    return {k if k == 'ci95' else f'answer_{k}': evaluation_names(v) if k == 'ci95' else v
            for k, v in m.items()}

def score_all(d: Path, out_json: Path|None):
    "Scores of every answers/NAME.jsonl in `d`, with the steps and seconds each setting trained."
    from qlora_rag.evaluate import answer_metrics, with_ci
    from qlora_rag.prompt import is_no_answer
    answered = {p.stem: [json.loads(l) for l in p.open()] for p in sorted((d/'answers').glob('*'))}
    def scores(rows, m):  # and the share of replies that say the context does not say
        said_no = sum(is_no_answer(r['answers'][m]) for r in rows) / len(rows)
        metrics = with_ci([answer_metrics(r['answers'][m], r['answer']) for r in rows])
        return dict(evaluation_names(metrics), said_no=round(said_no, 4))
    table = {name: {m: scores(rows, m) for m in ('norag', 'rag')}
             for name, rows in answered.items()}
    for name, scores in table.items(): print(name, json.dumps(scores))
    n_questions = len(next(iter(answered.values())))
    reports = [json.loads(p.read_text()) for p in sorted(d.glob('train_report*.json'))]
    trained = {n: dict(v, hardware=r['hardware'], steps=r['steps'])
               for r in reports for n, v in r['variants'].items()}
    def described(name, t):
        data = t.get('data', name)  # the training set; `name` may end in a --tag
        rows = int(re.search(r'_n(\d+)$|$', data)[1] or 1000)  # variants() names the set's size
        raft = variants(rows).get(data)  # None: a set made elsewhere (explore/reader_data.py)
        return dict(settings=raft and asdict(raft), rows=rows if raft else None,
                    config=t.get('config', []),
                    **{k: t[k] for k in ('hardware', 'steps', 'train_s')})
    if out_json: out_json.write_text(json.dumps(dict(
        questions=f'{n_questions} dev questions, chunks as the `data` step retrieved them',
        trained={n: described(n, t) for n, t in trained.items()}, results=table), indent=1) + '\n')

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('step', choices=('data', 'train', 'score'))
    ap.add_argument('dir', type=Path, help='working folder (outside the repository)')
    ap.add_argument('--collection', default='pydocs_c200_o30', help="the manual's collection")
    ap.add_argument('--split', default='dev', help='questions to tune on (never the test split)')
    ap.add_argument('--base', default='', help='base model folder (train step)')
    ap.add_argument('--steps', type=int, default=200, help='optimizer steps per setting (train)')
    ap.add_argument('--rows', type=int, default=1000, help='examples per training set (data)')
    ap.add_argument('--only', nargs='*', default=[], help='settings to write or train (by name)')
    ap.add_argument('--out', type=Path, help='train: copy adapters here; score: JSON file')
    ap.add_argument('--set', nargs='*', default=[], dest='sets', metavar='KEY=VALUE', type=setting,
                    help='train: config settings for every adapter, e.g. lora.r=64')
    ap.add_argument('--tag', default='', help="train: added to each adapter's name")
    a = ap.parse_args(argv)
    if a.step == 'data': make_data(a.dir, a.collection, a.split, a.rows, a.only)
    elif a.step == 'train': train_all(a.dir, a.base, a.out, a.steps, a.only, a.sets, a.tag)
    else: score_all(a.dir, a.out)

if __name__ == '__main__': main()
