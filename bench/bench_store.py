"""Store benchmark on this machine (`make bench-store`): ingestion, query latency and recall of qlora_rag's
pgvector store against LangChain's Postgres stores and raw psycopg, all in one run on one database.

Vectors are precomputed (store cost only): 384-d, normalized, drawn around 300 cluster centres so that an
ANN index has neighbourhoods to find (random vectors give any ANN index near-zero recall)."""
import argparse, json, os, platform, statistics, time
import numpy as np
from qlora_rag.store import connect, database_url, drop_collection, ensure_collection, ensure_index, upsert, search

DIM = 384

def clustered(n: int, seed: int=0, centres: int=300):
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centres, DIM)).astype(np.float32)
    x = c[rng.integers(0, centres, n)] + 0.35 * rng.normal(size=(n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)

def timed(fn):
    t = time.perf_counter(); fn(); return time.perf_counter() - t

def ours(conn, name, vecs, batch=10_000):
    drop_collection(conn, name); ensure_collection(conn, name, DIM)
    ids = [f'd{i}' for i in range(len(vecs))]; texts = [f'text {i}' for i in range(len(vecs))]; metas = [{'i': i} for i in range(len(vecs))]
    for s in range(0, len(vecs), batch): upsert(conn, name, ids[s:s+batch], texts[s:s+batch], vecs[s:s+batch], metas[s:s+batch])

def raw_copy(conn, name, vecs):
    conn.execute(f'DROP TABLE IF EXISTS {name}')
    conn.execute(f"CREATE TABLE {name} (id TEXT PRIMARY KEY, content TEXT, embedding vector({DIM}), metadata JSONB)")
    from psycopg.types.json import Jsonb
    with conn.transaction(), conn.cursor().copy(f"COPY {name} FROM STDIN (FORMAT BINARY)") as cp:
        cp.set_types(['text', 'text', 'vector', 'jsonb'])
        for i, v in enumerate(vecs): cp.write_row((f'd{i}', f'text {i}', v, Jsonb({'i': i})))

class Precomputed:
    "LangChain Embeddings that look vectors up by text (store-only cost)."
    def __init__(self, vecs): self.v = {f'text {i}': v.tolist() for i, v in enumerate(vecs)}
    def embed_documents(self, texts): return [self.v[t] for t in texts]
    def embed_query(self, text): return self.v[text]

def lc_v2(url, vecs):
    from langchain_postgres import PGEngine, PGVectorStore, Column
    from langchain_core.embeddings import Embeddings
    eng = PGEngine.from_connection_string(url.replace('postgresql://', 'postgresql+psycopg://', 1))
    eng.init_vectorstore_table('bench_lc2', DIM, id_column=Column('langchain_id', 'TEXT'), overwrite_existing=True)
    emb = type('E', (Precomputed, Embeddings), {})(vecs)
    store = PGVectorStore.create_sync(eng, emb, 'bench_lc2')
    texts = [f'text {i}' for i in range(len(vecs))]
    return timed(lambda: store.add_embeddings(texts, [v.tolist() for v in vecs], [{'i': i} for i in range(len(vecs))], ids=[f'd{i}' for i in range(len(vecs))]))

def lc_legacy(url, vecs):
    from langchain_postgres import PGVector
    from langchain_core.embeddings import Embeddings
    emb = type('E', (Precomputed, Embeddings), {})(vecs)
    store = PGVector(emb, connection=url.replace('postgresql://', 'postgresql+psycopg://', 1), collection_name='bench_legacy', pre_delete_collection=True, embedding_length=DIM)
    texts = [f'text {i}' for i in range(len(vecs))]
    return timed(lambda: store.add_embeddings(texts, [v.tolist() for v in vecs], [{'i': i} for i in range(len(vecs))], ids=[f'd{i}' for i in range(len(vecs))]))

def latencies(fn, queries):
    out = []
    for q in queries:
        t = time.perf_counter(); fn(q); out.append((time.perf_counter() - t) * 1000)
    return statistics.median(out), float(np.percentile(out, 95))

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0]); ap.add_argument('--n', type=int, default=100_000)
    ap.add_argument('--small', type=int, default=10_000); ap.add_argument('--json', default='bench/results/bench_store.json')
    a = ap.parse_args()
    url = database_url(); res = dict(machine=f'{platform.machine()}, {os.cpu_count()} cores', n=a.n, small=a.small)
    big = clustered(a.n); small = big[:a.small]
    with connect(url) as conn:
        res['ingest_small_s'] = dict(qlora_rag=timed(lambda: ours(conn, 'bench_ours', small)), raw_copy=timed(lambda: raw_copy(conn, 'bench_raw', small)))
    res['ingest_small_s']['PGVectorStore'] = lc_v2(url, small)
    res['ingest_small_s']['PGVector (legacy)'] = lc_legacy(url, small)
    with connect(url) as conn:
        res['ingest_big_s'] = dict(qlora_rag=timed(lambda: ours(conn, 'bench_ours', big)), raw_copy=timed(lambda: raw_copy(conn, 'bench_raw', big)))
        res['hnsw_build_s'] = timed(lambda: ensure_index(conn, 'bench_ours'))
        conn.execute("SET maintenance_work_mem = '1GB'")
        res['hnsw_build_raw_s'] = timed(lambda: conn.execute('CREATE INDEX ON bench_raw USING hnsw (embedding vector_cosine_ops)'))
        conn.execute('VACUUM ANALYZE bench_ours'); conn.execute('VACUUM ANALYZE bench_raw')
        rng = np.random.default_rng(1)
        queries = big[rng.integers(0, a.n, 200)] + 0.01 * rng.normal(size=(200, DIM)).astype(np.float32)  # near the data, as real queries are
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        for q in queries[:10]: search(conn, 'bench_ours', q, 10)  # warm the cache
        res['query_ms_ours'] = latencies(lambda q: search(conn, "bench_ours", q, 10), queries)
        conn.execute('SET hnsw.ef_search = 100')
        res['query_ms_raw'] = latencies(lambda q: conn.execute('SELECT id FROM bench_raw ORDER BY embedding <=> %s LIMIT 10', (q,)).fetchall(), queries)
        exact = np.argsort(-(queries @ big.T), axis=1)[:, :10]
        res['recall_at_10'] = {}
        for ef in (100, 200, 400):
            found = [[int(i[1:]) for i, *_ in search(conn, 'bench_ours', q, 10, ef_search=ef)] for q in queries]
            res['recall_at_10'][ef] = float(np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact)]))
        res['query_ms_ours_ef400'] = latencies(lambda q: search(conn, 'bench_ours', q, 10, ef_search=400), queries)
        for t in ('bench_ours', 'bench_raw', 'bench_lc2'): conn.execute(f'DROP TABLE IF EXISTS {t}')
    i = res['ingest_small_s']
    print(f"machine: {res['machine']}; PostgreSQL + pgvector (embedded); {a.small:,} and {a.n:,} x {DIM}-d clustered vectors")
    print(f"ingest {a.small:,}: " + ', '.join(f'{k} {v:.2f} s' for k, v in i.items()))
    print(f"  ratios: PGVectorStore/ours = {i['PGVectorStore'] / i['qlora_rag']:.0f}x, legacy/ours = {i['PGVector (legacy)'] / i['qlora_rag']:.1f}x, ours/raw COPY = {i['qlora_rag'] / i['raw_copy']:.2f}x")
    b = res['ingest_big_s']
    print(f"ingest {a.n:,}: qlora_rag {b['qlora_rag']:.2f} s, raw COPY {b['raw_copy']:.2f} s (ours/raw = {b['qlora_rag'] / b['raw_copy']:.2f}x); HNSW build {res['hnsw_build_s']:.1f} s (raw {res['hnsw_build_raw_s']:.1f} s)")
    o, r = res['query_ms_ours'], res['query_ms_raw']
    print(f"k=10 query at {a.n:,}: ours p50 {o[0]:.2f} ms / p95 {o[1]:.2f} ms; raw p50 {r[0]:.2f} / p95 {r[1]:.2f} ms (p50 ratio {o[0] / r[0]:.2f}x)")
    print('recall@10 vs exact: ' + ', '.join(f'ef_search {ef}: {r:.3f}' for ef, r in res['recall_at_10'].items())
          + f"; p50 at ef_search 400: {res['query_ms_ours_ef400'][0]:.2f} ms")
    os.makedirs(os.path.dirname(a.json), exist_ok=True); open(a.json, 'w').write(json.dumps(res, indent=2))

if __name__ == '__main__': main()
