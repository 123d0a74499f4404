"""Follow-up on the loaded bench_pydocs collection (bench_hybrid.py): does reading dotted names
twice
(as they are and split at dots) help, against one plain to_tsvector? Plus the hybrid plan with
sequential scans off. Writes results_split.json and plan_noseq.txt next to this file."""
import json
from pathlib import Path
import qlora_rag.store as st
from qlora_rag.db import connect
from qlora_rag.embed import SentenceEmbeddings
OUT, NAME, K, FETCH_K = Path('bench/results'), 'bench_pydocs', 3, 20
qa = [json.loads(l) for l in open('bench/qa/python_docs_qa.jsonl')]
conn = connect()
conn.execute(f"ALTER TABLE {NAME} ADD COLUMN IF NOT EXISTS plain_tsv tsvector "
             "GENERATED ALWAYS AS (to_tsvector('english', content)) STORED")
conn.execute(f"CREATE INDEX IF NOT EXISTS {NAME}_plain ON {NAME} USING gin (plain_tsv)")
conn.execute(f'ANALYZE {NAME}')
qvecs = SentenceEmbeddings().encode([q['question'] for q in qa])
norm = lambda s: ' '.join(s.lower().split())
base = dict(_QUERY=st._QUERY, _MATCHES=st._MATCHES, _HYBRID=st._HYBRID)
plain = {st._tsvector('p.cfg', 'p.txt'): 'to_tsvector(p.cfg, p.txt)', 'content_tsv': 'plain_tsv'}
def run(mode, swap):
    for attr, text in base.items():
        for a, b in swap.items(): text = text.replace(a, b)
        setattr(st, attr, text)
    page = answer = 0
    for q, v in zip(qa, qvecs):
        hits = (st.fulltext_search(conn, NAME, q['question'], K) if mode == 'fulltext' else
                st.hybrid_search(conn, NAME, v, q['question'], K, FETCH_K))
        page += any(h[2]['source'] == q['source'] for h in hits)
        answer += any(norm(q['answer']) in norm(h[1]) for h in hits)
    return dict(mode=mode, words='plain' if swap else 'dotted names split too',
                page_hit_at_3=round(page / len(qa), 3), answer_in_top3=round(answer / len(qa), 3))
res = [run(m, s) for m in ('fulltext', 'hybrid') for s in ({}, plain)]
for attr, text in base.items(): setattr(st, attr, text)
from psycopg import sql
conn.execute('SET enable_seqscan = off')
q = sql.SQL('EXPLAIN (COSTS OFF) ' + st._HYBRID).format(t=sql.Identifier(NAME),
                                                        cond=sql.SQL('TRUE'))
args = ['english', qa[0]['question'], qvecs[0], FETCH_K, FETCH_K, K]
plan = [r[0] for r in conn.execute(q, args)]
(OUT/'hybrid_75pages_plan_noseq.txt').write_text('\n'.join(l for l in plan if 'Scan' in l) + '\n')
(OUT/'hybrid_75pages_split.json').write_text(json.dumps(res, indent=1))
print(json.dumps(res, indent=1)); print('\n'.join(l for l in plan if 'Scan' in l))
