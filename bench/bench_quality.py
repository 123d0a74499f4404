"""Answer quality on a real manual (`make bench-quality`): retrieval modes and model arms, 95% CIs.

The corpus is the Python 3 documentation's HTML as Debian's `python3-doc` installs it (or any
folder of HTML pages given with --docs); it is read where it lies and never copied into the
repository. The questions are bench/qa/python_docs_qa.jsonl: hand-written, paraphrased, short
verbatim answers, split into `dev` (for tuning) and `test` (reported, never tuned on), with no page
shared between the splits.

1. Ingest the manual's main sections into a collection (reused when it already holds them).
2. Retrieval alone, for each search type (vector, full text, hybrid) at k = 3, 5, 10 (and default):
   hit@k, MRR and answer-in-context (the reference answer appears in the retrieved chunks).
3. Answers: the base model with the plain prompt and with its own chat template, and the fine-tuned
   adapter, each without and with retrieval (default search type and k); exact match, token F1 and
   answer-contains. Every figure has a 95% bootstrap interval; dev and test are reported apart.
Prints the tables, the hardware and the date, and writes everything to --json."""
import argparse, json, shutil, sys, time
from datetime import date
from pathlib import Path

from bench_rag import hardware

SECTIONS = ('library', 'tutorial', 'reference', 'howto', 'using', 'faq', 'whatsnew')
DOCS = Path('/usr/share/doc/python3.11/html')

def corpus(docs: Path, sections, dest: Path) -> Path:
    "The manual's sections as one folder (HTML pages only), so sources read `library/os.html`."
    if not docs.is_dir():
        sys.exit(f"bench-quality: {docs} not found: install it with `apt-get install python3-doc` "
                 "or pass --docs FOLDER")
    if not dest.exists():
        tmp = dest.with_name(dest.name + '.tmp')
        shutil.rmtree(tmp, ignore_errors=True)
        for s in sections:
            shutil.copytree(docs/s, tmp/s, ignore=shutil.ignore_patterns('*.js', '*.css', '*.png'))
        tmp.rename(dest)
    return dest

INGESTED = Path('bench/results/bench_quality_ingest.json')  # the run that filled the collection

def open_collection(folder: Path, name: str, args):
    "The store for collection `name` (ingesting `folder` unless it exists), and how it was filled."
    from qlora_rag.db import connect, database_url
    from qlora_rag.ingest import ingest
    from qlora_rag.store import PgVectorStore, list_collections
    url = database_url()
    with connect(url) as conn: present = name in list_collections(conn)
    if not present:
        report = ingest([folder], name, url, chunk_size=args.chunk_size, overlap=args.overlap)
        print(report)
        INGESTED.write_text(json.dumps(dict(
            collection=name, files=report.files, chunks=report.chunks,
            skipped=len(report.skipped), seconds=round(report.seconds, 1), hardware=hardware(),
            date=str(date.today())), indent=1) + '\n')
    filled = json.loads(INGESTED.read_text()) if INGESTED.exists() else {}
    return PgVectorStore(name, url=url), filled if filled.get('collection') == name else None

def retrieval(store, qa, k_values, search_types) -> dict:
    "Retrieval-only metrics with intervals for every search type and k."
    from qlora_rag.core import RagConfig
    from qlora_rag.evaluate import evaluate_retrieval, split_scores
    out = {}
    for st in search_types:
        for k in k_values:
            res = evaluate_retrieval(store, qa, RagConfig(search_type=st, k=k))
            out[f'{st}@{k}'] = split_scores(res)
            print(f'{st:>10} k={k}: ' + ', '.join(f'{m}={res[m]:.3f}' for m in
                  ('retrieval_hit_at_k', 'mrr', 'answer_in_context', 'queries_per_s')))
    return out

def answers(store, qa, args) -> dict:
    "Every model arm on the same retrieved chunks, scored per split."
    from qlora_rag.core import Config
    from qlora_rag.evaluate import compare, split_scores
    from qlora_rag.generate import Generator
    cfg = Config()
    cfg.rag.adapter, cfg.rag.search_type, cfg.rag.k = args.adapter, args.search_type, args.k
    gen = Generator.from_config(cfg)
    results = compare(gen, store, qa, cfg.rag, cfg.gen, progress=True)
    return {name: split_scores(res) for name, res in results.items()}

def parse_args(argv=None):
    from qlora_rag.core import IngestConfig, RagConfig
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--docs', type=Path, default=DOCS, help='the manual: a folder of HTML pages')
    ap.add_argument('--sections', nargs='*', default=SECTIONS, help='sub-folders to ingest')
    ap.add_argument('--qa', default='bench/qa/python_docs_qa.jsonl', help='questions (JSON Lines)')
    ap.add_argument('--adapter', default='runs/demo', help='the fine-tuned adapter or run folder')
    ap.add_argument('--adapter-note', default='', help='how the adapter was made (report)')
    ap.add_argument('--k', type=int, default=RagConfig().k, help='chunks in the context')
    ap.add_argument('--search-type', default=RagConfig().search_type, help='for the answer arms')
    ap.add_argument('--chunk-size', type=int, default=IngestConfig().chunk_size)
    ap.add_argument('--overlap', type=int, default=IngestConfig().overlap)
    ap.add_argument('--retrieval-only', action='store_true', help='skip the answer arms')
    ap.add_argument('--json', type=Path, help='write the results here')
    return ap.parse_args(argv)

def main(argv=None):
    from qlora_rag.core import cache_dir
    from qlora_rag.evaluate import load_qa
    args = parse_args(argv)
    qa = load_qa(args.qa)
    folder = corpus(args.docs, args.sections, cache_dir()/'bench'/'python-docs')
    name = f'pydocs_c{args.chunk_size}_o{args.overlap}'
    store, report = open_collection(folder, name, args)
    res = dict(hardware=hardware(), date=str(date.today()), docs=str(args.docs), qa=args.qa,
               adapter=args.adapter_note or args.adapter, search_type=args.search_type, k=args.k,
               n=len(qa), collection=name, chunk_size=args.chunk_size, overlap=args.overlap,
               ingest=report)
    modes = ('similarity', 'fulltext', 'hybrid')
    res['retrieval'] = retrieval(store, qa, sorted({3, args.k, 5, 10}), modes)
    if not args.retrieval_only:
        res['answers'] = answers(store, qa, args)
    print(res['hardware'], res['date'])
    if args.json: args.json.write_text(json.dumps(res, indent=1) + '\n')

if __name__ == '__main__': main()
