"""Store benchmark on this machine (`make bench-store`), all in one run on one database.

Part `ingest`: ingestion and query latency of qlora_rag's pgvector store against
LangChain's Postgres stores and raw psycopg. Vectors are precomputed (store cost only): 384-d,
normalized, drawn around 300 cluster centres so that an ANN index has neighbourhoods to find
(random vectors give any ANN index near-zero recall). Writes --json.

Part `ef`: the HNSW `ef_search` sweep behind `StoreConfig.ef_search`. For each ef_search in EFS
and k in KS (3 is what a RAG prompt holds, `RagConfig.k`): recall@k and p50 latency on (a) the
clustered vectors, 10k and 100k, and (b) real all-MiniLM-L6-v2 embeddings of chunks of the Python
3.11 manual (the HTML of the python3-doc package), queried with held-out chunks and with the
manual's section headings. Ground truth is exact search (NumPy); the latency baseline is exact
search in PostgreSQL (a sequential scan), measured in the same run. Writes --ef-json."""
import argparse, html, json, os, platform, random, re, statistics, time
from pathlib import Path
import numpy as np
from qlora_rag.core import cache_dir
from qlora_rag.db import connect, database_url
from qlora_rag.store import drop_collection, ensure_collection, ensure_index, upsert, search

DIM = 384
EFS, KS = (10, 20, 40, 64, 100, 200, 400, 800), (3, 10)

def clustered(n: int, seed: int=0, centres: int=300):
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centres, DIM)).astype(np.float32)
    x = c[rng.integers(0, centres, n)] + 0.35 * rng.normal(size=(n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)

def near(data, n: int, seed: int=1):
    "n queries near the data, as real queries are: perturbed data points."
    rng = np.random.default_rng(seed)
    noise = 0.01 * rng.normal(size=(n, data.shape[1])).astype(np.float32)
    q = data[rng.integers(0, len(data), n)] + noise
    return q / np.linalg.norm(q, axis=1, keepdims=True)

def timed(fn):
    t = time.perf_counter(); fn(); return time.perf_counter() - t

def rows_of(vecs):
    "Ids, texts and metadata of the benchmark rows."
    n = range(len(vecs))
    return [f'd{i}' for i in n], [f'text {i}' for i in n], [{'i': i} for i in n]

def ours(conn, name, vecs, batch=10_000):
    drop_collection(conn, name); ensure_collection(conn, name, vecs.shape[1])
    ids, texts, metas = rows_of(vecs)
    for s in range(0, len(vecs), batch):
        upsert(conn, name, ids[s:s+batch], texts[s:s+batch], vecs[s:s+batch], metas[s:s+batch])

def raw_copy(conn, name, vecs):
    from psycopg.types.json import Jsonb
    conn.execute(f'DROP TABLE IF EXISTS {name}')
    conn.execute(f"CREATE TABLE {name} (id TEXT PRIMARY KEY, content TEXT, "
                 f"embedding vector({DIM}), metadata JSONB)")
    with conn.transaction(), conn.cursor().copy(f"COPY {name} FROM STDIN (FORMAT BINARY)") as cp:
        cp.set_types(['text', 'text', 'vector', 'jsonb'])
        for i, v in enumerate(vecs): cp.write_row((f'd{i}', f'text {i}', v, Jsonb({'i': i})))

class Precomputed:
    "LangChain Embeddings that look vectors up by text (store-only cost)."
    def __init__(self, vecs): self.v = {f'text {i}': v.tolist() for i, v in enumerate(vecs)}
    def embed_documents(self, texts): return [self.v[t] for t in texts]
    def embed_query(self, text): return self.v[text]

def _psycopg_url(url): return url.replace('postgresql://', 'postgresql+psycopg://', 1)

def _add_embeddings(store, vecs):
    ids, texts, metas = rows_of(vecs)
    return timed(lambda: store.add_embeddings(texts, [v.tolist() for v in vecs], metas, ids=ids))

def lc_v2(url, vecs):
    from langchain_postgres import PGEngine, PGVectorStore, Column
    from langchain_core.embeddings import Embeddings
    eng = PGEngine.from_connection_string(_psycopg_url(url))
    eng.init_vectorstore_table('bench_lc2', DIM, id_column=Column('langchain_id', 'TEXT'),
                               overwrite_existing=True)
    emb = type('E', (Precomputed, Embeddings), {})(vecs)
    return _add_embeddings(PGVectorStore.create_sync(eng, emb, 'bench_lc2'), vecs)

def lc_legacy(url, vecs):
    from langchain_postgres import PGVector
    from langchain_core.embeddings import Embeddings
    emb = type('E', (Precomputed, Embeddings), {})(vecs)
    store = PGVector(emb, connection=_psycopg_url(url), collection_name='bench_legacy',
                     pre_delete_collection=True, embedding_length=DIM)
    return _add_embeddings(store, vecs)

def latencies(fn, queries):
    out = []
    for q in queries:
        t = time.perf_counter(); fn(q); out.append((time.perf_counter() - t) * 1000)
    return statistics.median(out), float(np.percentile(out, 95))

def hardware(conn) -> dict:
    cpus = [l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')]
    one = lambda q: conn.execute(q).fetchone()[0]
    cpu = cpus[0] if cpus else platform.processor()
    return dict(machine=f'{platform.machine()}, {os.cpu_count()} cores, {cpu}',
                load_average=os.getloadavg(), postgres=one('SHOW server_version'),
                pgvector=one("SELECT extversion FROM pg_extension WHERE extname = 'vector'"))

# Part `ingest`: the store against LangChain's stores and raw psycopg

def bench_ingest(url, a) -> dict:
    res = dict(n=a.n, small=a.small)
    big = clustered(a.n); small = big[:a.small]
    with connect(url) as conn:
        res['hardware'] = hardware(conn)
        res['ingest_small_s'] = dict(qlora_rag=timed(lambda: ours(conn, 'bench_ours', small)),
                                     raw_copy=timed(lambda: raw_copy(conn, 'bench_raw', small)))
    res['ingest_small_s']['PGVectorStore'] = lc_v2(url, small)
    res['ingest_small_s']['PGVector (legacy)'] = lc_legacy(url, small)
    with connect(url) as conn:
        res['ingest_big_s'] = dict(qlora_rag=timed(lambda: ours(conn, 'bench_ours', big)),
                                   raw_copy=timed(lambda: raw_copy(conn, 'bench_raw', big)))
        res['hnsw_build_s'] = timed(lambda: ensure_index(conn, 'bench_ours'))
        conn.execute("SET maintenance_work_mem = '1GB'")
        index = 'CREATE INDEX ON bench_raw USING hnsw (embedding vector_cosine_ops)'
        res['hnsw_build_raw_s'] = timed(lambda: conn.execute(index))
        conn.execute('VACUUM ANALYZE bench_ours'); conn.execute('VACUUM ANALYZE bench_raw')
        queries = near(big, 200)
        ask = lambda q: search(conn, 'bench_ours', q, 10, ef_search=100)
        for q in queries[:10]: ask(q)  # warm the cache
        res['query_ms_ours'] = latencies(ask, queries)
        conn.execute('SET hnsw.ef_search = 100')
        raw = 'SELECT id FROM bench_raw ORDER BY embedding <=> %s LIMIT 10'
        res['query_ms_raw'] = latencies(lambda q: conn.execute(raw, (q,)).fetchall(), queries)
        for t in ('bench_ours', 'bench_raw', 'bench_lc2'): conn.execute(f'DROP TABLE IF EXISTS {t}')
    print_ingest(res, a)
    return res

def print_ingest(res, a):
    i, b, hw = res['ingest_small_s'], res['ingest_big_s'], res['hardware']
    print(f"machine: {hw['machine']}; PostgreSQL {hw['postgres']} + pgvector {hw['pgvector']}")
    print(f"ingest {a.small:,}: " + ', '.join(f'{k} {v:.2f} s' for k, v in i.items()))
    print(f"  ratios: PGVectorStore/ours = {i['PGVectorStore'] / i['qlora_rag']:.0f}x, "
          f"legacy/ours = {i['PGVector (legacy)'] / i['qlora_rag']:.1f}x, "
          f"ours/raw COPY = {i['qlora_rag'] / i['raw_copy']:.2f}x")
    print(f"ingest {a.n:,}: qlora_rag {b['qlora_rag']:.2f} s, raw COPY {b['raw_copy']:.2f} s "
          f"(ours/raw = {b['qlora_rag'] / b['raw_copy']:.2f}x); "
          f"HNSW build {res['hnsw_build_s']:.1f} s (raw {res['hnsw_build_raw_s']:.1f} s)")
    o, r = res['query_ms_ours'], res['query_ms_raw']
    print(f"k=10 query at {a.n:,}, ef_search 100: ours p50 {o[0]:.2f} ms / p95 {o[1]:.2f} ms; "
          f"raw p50 {r[0]:.2f} / p95 {r[1]:.2f} ms (p50 ratio {o[0] / r[0]:.2f}x)")

# Part `ef`: the ef_search sweep

_BLOCK_END = re.compile(r'</(p|div|pre|li|dt|dd|tr|h[1-6]|section|blockquote|table)>', re.I)

def page_text(path: Path) -> tuple[str, list[str]]:
    "The main text of a Sphinx HTML page (headings as Markdown) and its section headings."
    page = path.read_text(errors='replace')
    start, end = page.find('role="main"'), page.find('class="sphinxsidebar"')
    body = page[page.find('>', start) + 1:end if end > start else None]
    body = re.sub(r'<a class="headerlink".*?</a>', '', body, flags=re.S)
    body = re.sub(r'<h([1-3])[^>]*>', lambda m: '\n\n' + '#' * int(m[1]) + ' ', body)
    heads = [html.unescape(re.sub(r'<[^>]+>', '', h)).strip()
             for h in re.findall(r'\n#{2,3} (.*?)</h[23]>', body, re.S)]
    text = html.unescape(re.sub(r'<[^>]+>', '', _BLOCK_END.sub('\n\n', body)))
    text = re.sub(r'[ \t]+\n', '\n', re.sub(r'\n{3,}', '\n\n', text)).strip()
    return text, [h for h in heads if 3 <= len(h) <= 80]

def manual_chunks(root: Path, pages: int, seed: int=0):
    "Distinct chunks (as ingested by default) of `pages` pages of the manual, and its headings."
    from langchain_core.documents import Document
    from qlora_rag.embed import SentenceEmbeddings
    from qlora_rag.ingest import split_documents
    files = sorted(p for d in ('tutorial', 'howto', 'reference', 'faq', 'library')
                   for p in (root/d).rglob('*.html'))
    files = sorted(random.Random(seed).sample(files, min(pages, len(files))))
    docs, heads = [], []
    for f in files:
        text, h = page_text(f)
        if text: docs.append(Document(text, metadata=dict(source=str(f.relative_to(root)))))
        heads += h
    chunks = split_documents(docs, SentenceEmbeddings().tokenizer)
    texts = list(dict.fromkeys(c.page_content for c in chunks))  # identical chunks would tie
    return texts, sorted(set(heads)), len(files)

def manual_embeddings(root: Path, pages: int) -> dict:
    "Embeddings of the manual's chunks and headings, cached (outside the repository) by page count."
    from qlora_rag.embed import SentenceEmbeddings
    cache = cache_dir()/'bench'/f'pydoc311_minilm_{pages}.npz'
    if cache.exists():
        z = np.load(cache); return dict(chunks=z['chunks'], heads=z['heads'], pages=int(z['pages']))
    if not root.is_dir(): raise SystemExit(f'{root} not found: apt-get install -y python3-doc')
    texts, heads, n = manual_chunks(root, pages)
    print(f'embedding {len(texts):,} chunks and {len(heads):,} headings of {n} pages of the '
          'Python 3.11 manual ...', flush=True)
    emb = SentenceEmbeddings(batch_size=64)
    out = dict(chunks=emb.encode(texts), heads=emb.encode(heads), pages=n)
    cache.parent.mkdir(parents=True, exist_ok=True); np.savez(cache, **out)
    return out

def kth_similarity(queries, data, k: int):
    "Each query's k-th largest cosine similarity to the data (exact search, NumPy)."
    return -np.partition(-(queries @ data.T), k - 1, axis=1)[:, k - 1]

def recall(found: list[list[float]], kth, k: int) -> float:
    "Share of the true k nearest found: a hit is as similar as the exact k-th or more (ties count)."
    return float(np.mean([sum(s >= t - 1e-5 for s in f[:k]) / k for f, t in zip(found, kth)]))

def run_queries(conn, name, queries, k, ef):
    "Similarities found and per-query latency (ms) of `search` for every query."
    sims, ms = [], []
    for q in queries[:10]: search(conn, name, q, k, ef_search=ef)  # warm up
    for q in queries:
        t = time.perf_counter(); rows = search(conn, name, q, k, ef_search=ef)
        ms.append((time.perf_counter() - t) * 1000); sims.append([r[3] for r in rows])
    return sims, ms

def plans(conn, exact, name, vector) -> dict:
    "The query plans of both connections; the HNSW one must use the index, the exact one must not."
    plan = f'EXPLAIN SELECT langchain_id FROM {name} ORDER BY embedding <=> %s LIMIT 3'
    scan = lambda c: re.findall(r'((?:Parallel )?(?:Index|Seq) Scan(?: using \S+)? on \S+)',
                                ' '.join(r[0] for r in c.execute(plan, [vector]).fetchall()))
    out = dict(hnsw=scan(conn), exact=scan(exact))
    assert out['hnsw'] == [f'Index Scan using {name}_hnsw on {name}'], out
    assert out['exact'] and 'Seq Scan' in out['exact'][0], out
    return out

def sweep_queries(conn, exact, name, data, queries) -> dict:
    "Exact and HNSW searches of `queries` for every k and ef_search."
    res = dict(n=len(queries), exact={}, ef={})
    for k in KS:
        kth = kth_similarity(queries, data, k)
        sims, ms = run_queries(exact, name, queries, k, EFS[0])
        res['exact'][k] = dict(recall=recall(sims, kth, k), p50_ms=statistics.median(ms))
        for ef in EFS:
            sims, ms = run_queries(conn, name, queries, k, ef)
            p50 = statistics.median(ms)
            res['ef'].setdefault(ef, {})[k] = dict(
                recall=recall(sims, kth, k), p50_ms=p50, p95_ms=float(np.percentile(ms, 95)),
                speedup_vs_exact=res['exact'][k]['p50_ms'] / p50)
    return res

def sweep(url, name: str, data, query_sets: dict, what: str) -> dict:
    "Load `data` with an HNSW index, then sweep every query set; exact search is the baseline."
    with connect(url) as conn, connect(url) as exact:
        t = time.time(); ours(conn, name, data); ensure_index(conn, name)
        conn.execute(f'VACUUM ANALYZE {name}')
        out = dict(rows=len(data), description=what, load_and_index_s=time.time() - t, queries={})
        exact.execute('SET enable_indexscan = off')  # a sequential scan: exact search in PostgreSQL
        out['plans'] = plans(conn, exact, name, data[0])
        for qname, queries in query_sets.items():
            out['queries'][qname] = sweep_queries(conn, exact, name, data, queries)
        drop_collection(conn, name)
    return out

def print_sweep(name, d):
    for qname, r in d['queries'].items():
        e3, e10 = r['exact'][3], r['exact'][10]
        print(f"\n{name}: {d['rows']:,} rows, {r['n']} queries ({qname}); load + index "
              f"{d['load_and_index_s']:.1f} s")
        print(f"  exact (PostgreSQL, sequential scan): p50 {e3['p50_ms']:.2f} ms at k=3, "
              f"{e10['p50_ms']:.2f} ms at k=10 (recall {e3['recall']:.3f} / {e10['recall']:.3f})")
        print('  ef_search | recall@3 | p50 ms k=3 | vs exact | recall@10 | p50 ms k=10 | vs exact')
        for ef, by_k in r['ef'].items():
            a, b = by_k[3], by_k[10]
            print(f"  {ef:9} | {a['recall']:8.3f} | {a['p50_ms']:10.2f} | "
                  f"{a['speedup_vs_exact']:7.1f}x | {b['recall']:9.3f} | {b['p50_ms']:11.2f} | "
                  f"{b['speedup_vs_exact']:7.1f}x")

def choose_ef(datasets: dict, rule_sets: list[tuple[str, str]], k: int=3, target: float=0.99):
    "The smallest ef_search whose recall@k reaches `target` on every (dataset, query set) given."
    ok = [ef for ef in EFS
          if all(datasets[d]['queries'][q]['ef'][ef][k]['recall'] >= target for d, q in rule_sets)]
    return ok[0] if ok else None

MANUAL = 'Python manual (MiniLM)'

def bench_ef(url, a) -> dict:
    with connect(url) as conn: res = dict(hardware=hardware(conn))
    res['params'] = dict(hnsw_m=16, hnsw_ef_construction=64, efs=EFS, ks=KS, queries=a.queries,
                         recall='share of the exact k nearest found (a hit is at least as similar '
                                'as the exact k-th)')
    big, res['datasets'] = clustered(a.n), {}
    for n in (a.small, a.n):
        res['datasets'][f'clustered {n // 1000}k'] = sweep(
            url, 'bench_ef', big[:n], {'perturbed data points': near(big[:n], a.queries)},
            f'{n:,} x {DIM}-d normalized vectors around 300 cluster centres')
    m = manual_embeddings(Path(a.docs), a.pages)
    rng = np.random.default_rng(2)
    held = rng.choice(len(m['chunks']), a.queries, replace=False)
    stored = np.delete(m['chunks'], held, axis=0)
    heads = m['heads'][rng.choice(len(m['heads']), min(a.queries, len(m['heads'])), replace=False)]
    res['datasets'][MANUAL] = sweep(
        url, 'bench_ef', stored, {'held-out chunks': m['chunks'][held], 'section headings': heads},
        f"all-MiniLM-L6-v2 embeddings of {len(stored):,} distinct 200-token chunks of {m['pages']} "
        f"pages of the Python 3.11 manual; {a.queries} held-out chunks and {len(heads)} section "
        "headings as queries")
    rule = [(MANUAL, 'held-out chunks'), (MANUAL, 'section headings'),
            (f'clustered {a.n // 1000}k', 'perturbed data points')]
    res['recommended_ef_search'] = choose_ef(res['datasets'], rule)
    res['rule'] = ('smallest ef_search with recall@3 >= 0.99 on the real embeddings (both query '
                   'sets) and on the largest clustered set')
    hw = res['hardware']
    print(f"machine: {hw['machine']}; load average at start {hw['load_average']}; PostgreSQL "
          f"{hw['postgres']} + pgvector {hw['pgvector']}; HNSW m 16, ef_construction 64")
    for name, d in res['datasets'].items(): print_sweep(name, d)
    print(f"\nrecommended ef_search: {res['recommended_ef_search']} ({res['rule']})")
    return res

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--parts', default='ingest,ef', help='comma-separated: ingest, ef')
    ap.add_argument('--n', type=int, default=100_000)
    ap.add_argument('--small', type=int, default=10_000)
    ap.add_argument('--queries', type=int, default=500, help='queries per query set (ef sweep)')
    ap.add_argument('--docs', default='/usr/share/doc/python3.11/html',
                    help='the Python 3.11 manual as HTML (apt-get install python3-doc)')
    ap.add_argument('--pages', type=int, default=300, help='pages of the manual to chunk')
    ap.add_argument('--json', default='bench/results/bench_store.json')
    ap.add_argument('--ef-json', default='bench/results/bench_store_ef.json')
    a = ap.parse_args()
    url, parts = database_url(), a.parts.split(',')
    for part, fn, dest in (('ingest', bench_ingest, a.json), ('ef', bench_ef, a.ef_json)):
        if part not in parts: continue
        res = fn(url, a)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        Path(dest).write_text(json.dumps(res, indent=2))

if __name__ == '__main__': main()
