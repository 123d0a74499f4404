"""Fault suite: processes killed mid-work, the database restarted, concurrent clients, hostile input, secrets,
unusable output folders. Every test uses real processes and the real test database that `make test` starts.
Each records what it injected in `fault_log`; conftest.py prints the summary table."""
import json, os, random, re, signal, subprocess, sys, threading, time
from pathlib import Path
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck
from qlora_rag.core import Config, ConfigError
from qlora_rag.ingest import PgVectorStore, ingest
from qlora_rag.store import StoreError, connect, drop_collection, check_name, start_embedded, stop_embedded, embedded_status, SentenceEmbeddings

PY = sys.executable
CLI = [PY, '-m', 'qlora_rag.cli']
SECRET = 's3cr3t-pw-7781'

@pytest.fixture(scope='module')
def emb(): return SentenceEmbeddings()

def make_corpus(folder: Path, n: int, prefix: str='doc') -> Path:
    "n short Markdown files (one chunk each) with distinct content."
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(n)
    words = 'harbour lantern ferry tide chapel market bridge island stew museum river meadow'.split()
    for i in range(n):
        (folder/f'{prefix}-{i:04d}.md').write_text(f"# {prefix} {i}\n\n{prefix} {i} tells of the {' '.join(rng.choices(words, k=12))} number {i}.\n")
    return folder

def rows(coll: str) -> tuple[int, int]:
    "Rows and distinct ids in a collection."
    with connect() as c:
        return c.execute(f'SELECT count(*), count(DISTINCT langchain_id) FROM "{coll}"').fetchone()

def index_valid(coll: str) -> bool:
    with connect() as c:
        r = c.execute("SELECT bool_and(i.indisvalid) FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid WHERE t.relname = %s", [coll]).fetchone()
    return bool(r[0])

def drop(*colls):
    with connect() as c:
        for coll in colls: drop_collection(c, coll)

INGEST = 'import sys; from qlora_rag.ingest import ingest; print(ingest([sys.argv[1]], sys.argv[2], batch=8))'

# 1. kill -9 during ingestion

def test_kill_during_ingest(tmp_path, fault_log):
    corpus, coll, n = make_corpus(tmp_path/'corpus', 400), 'fault_ingest', 400
    drop(coll)
    rng, kills = random.Random(1), 0
    for _ in range(3):
        before = rows(coll)[0] if _table_exists(coll) else 0
        p = subprocess.Popen([PY, '-c', INGEST, str(corpus), coll], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while p.poll() is None and time.time() < deadline and not (_table_exists(coll) and rows(coll)[0] > before): time.sleep(0.05)
        time.sleep(rng.uniform(0, 0.8))  # somewhere after its first committed batch
        if p.poll() is None: p.send_signal(signal.SIGKILL); kills += 1
        p.wait()
    partial = rows(coll)[0]
    done = subprocess.run([PY, '-c', INGEST, str(corpus), coll], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    total, distinct = rows(coll)
    again = subprocess.run([PY, '-c', INGEST, str(corpus), coll], capture_output=True, text=True)
    assert 'new: 0' in again.stdout and f'chunks: {n}' in again.stdout
    assert (total, distinct, index_valid(coll)) == (n, n, True)
    assert kills >= 2 and 0 < partial < n
    fault_log('kill -9 during ingest (3 times, after a committed batch)', kills, kills, n - total)
    drop(coll)

def _table_exists(coll: str) -> bool:
    with connect() as c: return c.execute('SELECT to_regclass(%s) IS NOT NULL', [f'"{coll}"']).fetchone()[0]

# 2. kill during training, after a checkpoint

def test_kill_during_training(tmp_path, fault_log):
    run = tmp_path/'run'
    cfg = tmp_path/'tiny.toml'
    cfg.write_text(f'[data]\nmax_examples = 24\nmax_tokens = 256\neval_fraction = 0.0\n\n'
                   f'[train]\noutput_dir = "{run}"\nmax_steps = 6\nsave_steps = 2\nbatch_size = 2\nlogging_steps = 1\ngradient_checkpointing = false\n')
    env = {**os.environ, 'QLORA_RAG_DATABASE_URL': _url_with_password()}  # a secret in the environment must not reach the run folder
    p = subprocess.Popen(CLI + ['train', '--config', str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.time() + 240
    while p.poll() is None and time.time() < deadline and not (run/'checkpoint-2'/'trainer_state.json').exists(): time.sleep(0.1)
    p.send_signal(signal.SIGKILL); first_log = p.communicate()[0]
    assert not (run/'report.json').exists()  # a killed run does not look finished
    r = subprocess.run(CLI + ['train', '--config', str(cfg), '--resume'], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads((run/'report.json').read_text())
    assert report['resumed_from_step'] >= 2 and report['steps'] == 6
    from qlora_rag.core import ModelConfig
    from qlora_rag.model import load_base_model, load_adapter
    load_adapter(load_base_model(ModelConfig(quant='none')), run/'adapter')  # the final adapter loads
    leaked = [str(f) for f in run.rglob('*') if f.is_file() and f.stat().st_size < 5e6 and SECRET.encode() in f.read_bytes()]
    assert not leaked and SECRET not in first_log + r.stdout + r.stderr
    fault_log(f"kill -9 during training (after checkpoint-2; resumed at {report['resumed_from_step']})", 1, 1, 0)

# 3. database restart between and during requests

LOOP = '''
import sys, time
from qlora_rag.core import QloraRagError
from qlora_rag.ingest import PgVectorStore
store = PgVectorStore(sys.argv[1], url=sys.argv[3]); store.similarity_search('warm up', k=1); print('ready', flush=True)
end = time.time() + float(sys.argv[2])
while time.time() < end:
    try: print('ok', len(store.similarity_search('lantern ferry', k=3)), flush=True)
    except QloraRagError as e: print('error', e, flush=True)
    time.sleep(0.05)
'''

def test_database_restart(tmp_path, emb, fault_log):
    if not embedded_status()['running']: pytest.skip('needs the embedded server that make test starts')
    coll = 'fault_restart'
    drop(coll)
    ingest([make_corpus(tmp_path/'c', 30)], coll, embeddings=emb)
    from qlora_rag.store import database_url
    url = database_url()  # explicit: with no URL configured, a request would start the embedded server itself
    store = PgVectorStore(coll, emb, url=url)
    assert len(store.similarity_search('lantern', k=3)) == 3
    stop_embedded()
    with pytest.raises(StoreError, match="can't connect|lost the database connection"): store.similarity_search('lantern', k=3)
    start_embedded()
    assert len(store.similarity_search('lantern', k=3)) == 3 and rows(coll) == (30, 30)  # reconnected; nothing lost
    p = subprocess.Popen([PY, '-c', LOOP, coll, '14', url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == 'ready'
    time.sleep(1); stop_embedded(); time.sleep(1.5); start_embedded()
    out, err = p.communicate(timeout=120)
    lines = out.splitlines()
    errors = [l for l in lines if l.startswith('error')]
    assert p.returncode == 0 and 'Traceback' not in err, err[-2000:]
    assert all(re.search(r"can't connect|lost the database connection", l) for l in errors)
    assert lines[-1] == 'ok 3' and errors, lines[-5:]  # requests during the outage failed cleanly; later ones reconnected
    assert rows(coll) == (30, 30)
    store.close(); drop(coll)
    fault_log('database restart (between and during requests)', 2, 2, 0)

# 4. concurrency: 8 threads searching while an ingest runs

def test_concurrent_search_and_ingest(tmp_path, emb, fault_log):
    coll = 'fault_concurrent'
    drop(coll)
    ingest([make_corpus(tmp_path/'a', 40, 'first')], coll, embeddings=emb)
    writer = subprocess.Popen([PY, '-c', INGEST, str(make_corpus(tmp_path/'b', 60, 'second')), coll], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results, errors = [], []
    def client(i):
        store = PgVectorStore(coll, emb)
        try:
            for j in range(15): results.append(len(store.similarity_search(f'lantern ferry {i} {j}', k=5)))
        except Exception as e: errors.append(repr(e))
        finally: store.close()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads: t.start()
    for t in threads: t.join()
    out, err = writer.communicate(timeout=300)
    assert writer.returncode == 0, err[-2000:]
    assert errors == [] and results == [5] * 120
    assert rows(coll) == (100, 100) and index_valid(coll)
    drop(coll)
    fault_log('8 concurrent search clients during an ingest', 120, 120, 0)

# 5. hostile and malformed input

def run_cli(*argv) -> tuple[int, str]:
    "`main` in this process; any exception other than a clean exit code fails the test."
    import contextlib, io
    from qlora_rag.cli import main
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err): code = main(list(argv))
    return code, err.getvalue()

values = st.one_of(st.text(max_size=50), st.text(alphabet=st.characters(codec='utf-8'), max_size=300), st.integers(), st.none(),
                   st.floats(allow_nan=False), st.lists(st.text(max_size=5), max_size=3), st.just('x' * 20000), st.just('a\x00b'))
records = st.dictionaries(st.sampled_from(['instruction', 'response', 'context', 'category', 'extra']), values, max_size=5)

@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(records, min_size=1, max_size=6))
def test_hostile_records(tmp_path_factory, rows_):
    f = tmp_path_factory.mktemp('rec')/'data.jsonl'
    f.write_text('\n'.join(json.dumps(r) for r in rows_))
    code, err = run_cli('data', '--data', str(f), '--max-tokens', '256')
    assert code in (0, 2) and 'Traceback' not in err
    if code == 2: assert err.startswith('qlora-rag: error: ')
    HOSTILE['records'] += 1

docs = st.one_of(st.text(max_size=2000), st.binary(max_size=300), st.just(''), st.just('\x00' * 10), st.just('word ' * 4000),
                 st.text(alphabet=st.characters(codec='utf-8', categories=['So', 'Lo', 'Zs', 'Cc']), max_size=500))

@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(docs, min_size=1, max_size=4))
def test_hostile_documents(tmp_path_factory, emb, contents):
    folder = tmp_path_factory.mktemp('docs')
    for i, c in enumerate(contents): (folder/f'd{i}.md').write_bytes(c if isinstance(c, bytes) else c.encode('utf-8', 'surrogatepass'))
    try: report = ingest([folder], 'fault_hostile_docs', embeddings=emb)
    except StoreError as e: assert 'nothing to ingest' in str(e)
    else: assert report.files + len(report.skipped) == len(contents)
    if _table_exists('fault_hostile_docs'):
        total, distinct = rows('fault_hostile_docs'); assert total == distinct
    HOSTILE['documents'] += 1

sqlish = st.one_of(st.text(max_size=40), st.sampled_from(["x'; DROP TABLE fault_sql; --", 'a"b', "1 OR 1=1", '/* */', "'", ';', '\\', "$$", "x\x00y"]))

@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(name=sqlish, value=st.one_of(sqlish, st.integers(), st.lists(sqlish, max_size=3)), key=sqlish)
def test_sql_in_names_and_filters(emb, sql_store, name, value, key):
    try: check_name(name)
    except StoreError: pass
    else: assert re.fullmatch(r'[A-Za-z_][A-Za-z0-9_]*', name)  # a name that passes is a plain identifier
    for flt in ({'source': value}, {key: value}, {'source': {'$in': value if isinstance(value, list) else [value]}}):
        try: sql_store.similarity_search('lantern', k=3, filter=flt)
        except StoreError: pass
    assert rows('fault_sql') == (10, 10)  # the table is untouched
    HOSTILE['names and filters'] += 1

@pytest.fixture(scope='module')
def sql_store(tmp_path_factory, emb):
    drop('fault_sql')
    ingest([make_corpus(tmp_path_factory.mktemp('sql'), 10)], 'fault_sql', embeddings=emb)
    store = PgVectorStore('fault_sql', emb)
    yield store
    store.close(); drop('fault_sql')

config_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=10)),
                             lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)), max_leaves=8)
sections = st.dictionaries(st.sampled_from(['data', 'model', 'lora', 'train', 'other']),
                           st.one_of(config_values, st.dictionaries(st.sampled_from(['max_tokens', 'r', 'quant', 'batch_size', 'learning_rate', 'style', 'zzz']), config_values, max_size=4)), max_size=4)

@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(sections)
def test_hostile_config(tmp_path_factory, cfg):
    f = tmp_path_factory.mktemp('cfg')/'c.json'
    f.write_text(json.dumps(cfg))
    try: Config.load(f).check()
    except ConfigError: pass
    HOSTILE['config files'] += 1

HOSTILE = {'records': 0, 'documents': 0, 'names and filters': 0, 'config files': 0}

def test_hostile_summary(fault_log):
    for what, n in HOSTILE.items(): fault_log(f'hostile input: {what} (hypothesis)', n, n, 0)
    assert all(HOSTILE.values())

# 6. secrets

def _url_with_password() -> str:
    from qlora_rag.store import database_url
    url = database_url()
    return re.sub(r'^postgresql://([^:@/]*)(:[^@]*)?@', rf'postgresql://\1:{SECRET}@', url)  # the test server trusts its socket: any password works

def test_password_never_printed(tmp_path, fault_log):
    url = _url_with_password()
    assert SECRET in url
    corpus = make_corpus(tmp_path/'c', 3)
    qa = tmp_path/'qa.jsonl'; qa.write_text(json.dumps(dict(question='What does doc 1 tell of?', answer='harbour', source='doc-0001.md')))
    runs = [CLI + ['db', 'url', '--db', url], CLI + ['ingest', str(corpus), '--collection', 'fault_secret', '--db', url],
            CLI + ['search', 'harbour', '--collection', 'fault_secret', '--db', url, '--json'],
            CLI + ['eval', str(qa), '--collection', 'fault_secret', '--db', url, '--no-adapter', '--json', '--max-new-tokens', '4'],
            CLI + ['search', 'x', '--db', f'postgresql://me:{SECRET}@127.0.0.1:1/db'],
            CLI + ['ask', 'x', '--db', f'postgresql+psycopg2://me:{SECRET}@127.0.0.1:1/db', '--no-adapter']]
    codes = []
    for argv in runs:
        r = subprocess.run(argv, capture_output=True, text=True)
        codes.append(r.returncode)
        assert SECRET not in r.stdout + r.stderr, argv
        assert 'Traceback' not in r.stderr
    assert codes == [0, 0, 0, 0, 2, 2]
    drop('fault_secret')
    fault_log('password in DB URL (6 commands, ok and failing)', 6, 6, 0)

# 7. unwritable or full output folder

def test_unusable_output_dir(tmp_path, monkeypatch, fault_log):
    blocker = tmp_path/'a_file'; blocker.write_text('x')
    r = subprocess.run(CLI + ['train', '--output', str(blocker/'run')], capture_output=True, text=True)
    assert r.returncode == 2 and 'is not writable' in r.stderr and 'trainable params' not in r.stdout
    import shutil
    from collections import namedtuple
    usage = namedtuple('usage', 'total used free')
    monkeypatch.setattr(shutil, 'disk_usage', lambda p: usage(10 * 2**30, 10 * 2**30 - 50 * 2**20, 50 * 2**20))
    code, err = run_cli('train', '--output', str(tmp_path/'full'))
    assert code == 2 and 'only 50 MiB free' in err
    assert not [p for p in (tmp_path/'full').iterdir()]  # nothing that looks like a run
    fault_log('output folder unwritable / disk full (refused before training)', 2, 2, 0)
