"""Retrieval quality and latency of the store's search modes on the Python 3.11 HTML manual.

Chunks the pages that bench/qa/python_docs_qa.jsonl asks about plus library pages in name order
until MAX_CHUNKS (section-path first line, ~150-word windows), embeds them with the bundled
MiniLM, loads them with the store's own functions, then asks the 120 questions in each mode.
An exploration made while designing the full-text side; writes
bench/results/hybrid_75pages.json and hybrid_75pages_plan.txt."""
import json, re, statistics, sys, time
from pathlib import Path
from bs4 import BeautifulSoup
import numpy as np
import qlora_rag.store as st
from qlora_rag.db import connect
from qlora_rag.embed import SentenceEmbeddings

HTML, OUT = Path('/usr/share/doc/python3.11/html'), Path('bench/results')
MAX_CHUNKS, WORDS, OVERLAP, K, FETCH_K, NAME = 4000, 150, 25, 3, 20, 'bench_pydocs'
qa = [json.loads(l) for l in open('bench/qa/python_docs_qa.jsonl')]

def chunks(rel):
    soup = BeautifulSoup((HTML/rel).read_text(errors='replace'), 'lxml')
    body = soup.select_one('div.body') or soup.body
    title = (soup.title.get_text(' ', strip=True) if soup.title else rel).split(' — ')[0]
    for sec in body.find_all('section'):
        nest = [*reversed(sec.find_parents('section')), sec]
        heads = [s.find(re.compile('^h[1-6]$')) for s in nest]
        path = ' > '.join(h.get_text(' ', strip=True).rstrip('¶') for h in heads if h)
        own = BeautifulSoup(str(sec), 'lxml')
        for sub in own.find_all('section')[1:]: sub.decompose()
        words = own.get_text(' ', strip=True).split()
        for i in range(0, max(len(words) - OVERLAP, 1), WORDS - OVERLAP):
            yield f'{title} > {path}' if path else title, ' '.join(words[i:i + WORDS])

library = sorted(str(p.relative_to(HTML)) for p in (HTML/'library').glob('*.html'))
pages = list(dict.fromkeys([q['source'] for q in qa] + library))
rows = []
for rel in pages:
    if len(rows) >= MAX_CHUNKS: break
    rows += [(rel, i, f'{sec}\n{text}') for i, (sec, text) in enumerate(chunks(rel))]
print(len(rows), 'chunks from', len({r[0] for r in rows}), 'pages', flush=True)
emb = SentenceEmbeddings()
t = time.time(); vecs = emb.encode([r[2] for r in rows]); embed_s = time.time() - t
conn = connect()
st.drop_collection(conn, NAME); st.ensure_collection(conn, NAME, vecs.shape[1])
t = time.time()
st.upsert(conn, NAME, [f'{r[0]}:{r[1]}' for r in rows], [r[2] for r in rows], vecs,
          [dict(source=r[0], chunk=r[1]) for r in rows])
load_s = time.time() - t; t = time.time(); st.ensure_index(conn, NAME); index_s = time.time() - t
conn.execute(f'ANALYZE {NAME}')
qvecs = emb.encode([q['question'] for q in qa])
norm = lambda s: ' '.join(s.lower().split())

base = dict(q=st._QUERY, m=st._MATCHES, h=st._HYBRID)
variants = {  # name -> (module constant -> replacement)
    'or_ts_rank': {},
    'or_ts_rank_cd': {'ts_rank(': 'ts_rank_cd('},
    'and_websearch': {st._TSQUERY: 'websearch_to_tsquery(p.cfg, p.txt)'},
}
def use(variant):
    for key, attr in (('q', '_QUERY'), ('m', '_MATCHES'), ('h', '_HYBRID')):
        text = base[key]
        for a, b in variants[variant].items(): text = text.replace(a, b)
        setattr(st, attr, text)

def run(mode, variant='or_ts_rank'):
    use(variant); page = answer = 0; times = []
    for q, v in zip(qa, qvecs):
        t = time.perf_counter()
        if mode == 'similarity': hits = st.search(conn, NAME, v, K)
        elif mode == 'fulltext': hits = st.fulltext_search(conn, NAME, q['question'], K)
        else: hits = st.hybrid_search(conn, NAME, v, q['question'], K, FETCH_K)
        times.append((time.perf_counter() - t) * 1000)
        page += any(h[2]['source'] == q['source'] for h in hits)
        answer += any(norm(q['answer']) in norm(h[1]) for h in hits)
    n = len(qa)
    return dict(mode=mode, variant=variant, page_hit_at_3=round(page / n, 3),
                answer_in_top3=round(answer / n, 3), p50_ms=round(statistics.median(times), 2),
                p95_ms=round(float(np.percentile(times, 95)), 2))

results = [run('similarity')]
for var in variants:
    results += [run('fulltext', var), run('hybrid', var)]
results += [run('similarity'), run('hybrid')]  # repeats: latency noise
use('or_ts_rank')
from psycopg import sql
q = sql.SQL('EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) ' + st._HYBRID).format(
    t=sql.Identifier(NAME), cond=sql.SQL('TRUE'))
args = ['english', qa[0]['question'], qvecs[0], FETCH_K, FETCH_K, K]
plan = [r[0] for r in conn.execute(q, args)]
(OUT/'hybrid_75pages_plan.txt').write_text('\n'.join(plan) + '\n')
out = dict(chunks=len(rows), pages=len({r[0] for r in rows}), questions=len(qa), k=K,
           fetch_k=FETCH_K,
           embed_s=round(embed_s, 1), load_s=round(load_s, 2), index_s=round(index_s, 2),
           plan_uses=dict(hnsw=any(f'{NAME}_hnsw' in l for l in plan),
                          gin=any(f'{NAME}_fts' in l for l in plan)),
           results=results)
(OUT/'hybrid_75pages.json').write_text(json.dumps(out, indent=1))
print(json.dumps(out, indent=1))
