"""Fault suite: processes killed mid-work, the database restarted, concurrent clients, hostile
input, secrets, unusable output folders, a GPU out of memory. Every test uses real processes and the
real test database that `make test` starts. Each records what it observed in `fault_log` BEFORE
asserting, so a failure shows in the summary table that conftest.py prints."""

import json, os, random, re, signal, subprocess, sys, threading, time
from pathlib import Path
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck
from conftest import examples
from qlora_rag.core import Config, ConfigError
from qlora_rag.db import StoreError, connect, start_embedded, stop_embedded, embedded_status
from qlora_rag.db import database_url
from qlora_rag.embed import SentenceEmbeddings
from qlora_rag.ingest import ingest
from qlora_rag.store import PgVectorStore, drop_collection, check_name

PY = sys.executable
CLI = [PY, '-m', 'qlora_rag.cli']
SECRET = 's3cr3t-pw-7781'
WORDS = 'harbour lantern ferry tide chapel market bridge island stew museum river meadow'.split()


@pytest.fixture(scope='module')
def emb():
    return SentenceEmbeddings()


def make_corpus(folder: Path, n: int, prefix: str = 'doc') -> Path:
    "n short Markdown files (one chunk each) with distinct content."
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(n)
    for i in range(n):
        words = ' '.join(rng.choices(WORDS, k=12))
        (folder / f'{prefix}-{i:04d}.md').write_text(
            f"# {prefix} {i}\n\n{prefix} {i} tells of the {words} {i}.\n"
        )
    return folder


def rows(coll: str) -> tuple[int, int]:
    "Rows and distinct ids in a collection."
    with connect() as c:
        return c.execute(f'SELECT count(*), count(DISTINCT langchain_id) FROM "{coll}"').fetchone()


def index_valid(coll: str) -> bool:
    q = (
        "SELECT bool_and(i.indisvalid) FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid "
        "WHERE t.relname = %s"
    )
    with connect() as c:
        return bool(c.execute(q, [coll]).fetchone()[0])


def table_exists(coll: str) -> bool:
    with connect() as c:
        return c.execute('SELECT to_regclass(%s) IS NOT NULL', [f'"{coll}"']).fetchone()[0]


def drop(*colls):
    with connect() as c:
        for coll in colls:
            drop_collection(c, coll)


INGEST = (
    'import sys; from qlora_rag.ingest import ingest; '
    'print(ingest([sys.argv[1]], sys.argv[2], batch=2))'
)


def start_ingest(corpus: Path, coll: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([PY, '-c', INGEST, str(corpus), coll], text=True, **kw)


# 1. kill -9 during ingestion


def wait_for_rows(p: subprocess.Popen, coll: str, before: int, timeout: float = 120):
    "Until `p` has committed a batch beyond `before` rows (or ended)."
    deadline = time.time() + timeout
    while p.poll() is None and time.time() < deadline:
        if table_exists(coll) and rows(coll)[0] > before:
            return
        time.sleep(0.05)


def test_kill_during_ingest(tmp_path, fault_log):
    "Killed part-way three times (after a committed batch): a rerun completes it exactly."
    corpus, coll, n = make_corpus(tmp_path / 'corpus', 400), 'fault_ingest', 400
    drop(coll)
    rng, kills = random.Random(1), 0
    for _ in range(3):
        before = rows(coll)[0] if table_exists(coll) else 0
        p = start_ingest(corpus, coll, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_rows(p, coll, before)
        time.sleep(rng.uniform(0, 0.1))  # somewhere after its first committed batch
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
        p.wait()
        kills += p.returncode == -signal.SIGKILL and 0 < rows(coll)[0] < n  # killed part-way
    done = subprocess.run([PY, '-c', INGEST, str(corpus), coll], capture_output=True, text=True)
    total, distinct = rows(coll)
    again = subprocess.run([PY, '-c', INGEST, str(corpus), coll], capture_output=True, text=True)
    whole = done.returncode == 0 and (total, distinct, index_valid(coll)) == (n, n, True)
    fault_log(
        'kill -9 during ingest (part-way, after a committed batch)',
        kills,
        kills if whole else 0,
        n - distinct,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert 'new: 0' in again.stdout and f'chunks: {n}' in again.stdout
    assert (total, distinct, index_valid(coll)) == (n, n, True)
    assert kills >= 2, kills
    drop(coll)


# 2. kill during training, after a checkpoint

TINY_RUN = '''[data]
categories = ["information_extraction", "open_qa"]
max_examples = 24
max_tokens = 256
eval_fraction = 0.0

[train]
output_dir = "{run}"
max_steps = 6
save_steps = 2
batch_size = 2
logging_steps = 1
gradient_checkpointing = false
'''


def leaked_secret(folder: Path) -> list[str]:
    small = [f for f in folder.rglob('*') if f.is_file() and f.stat().st_size < 5e6]
    return [str(f) for f in small if SECRET.encode() in f.read_bytes()]


def test_kill_during_training(tmp_path, fault_log):
    run, cfg = tmp_path / 'run', tmp_path / 'tiny.toml'
    cfg.write_text(TINY_RUN.format(run=run))
    env = {
        **os.environ,
        'QLORA_RAG_DATABASE_URL': url_with_password(),
    }  # must not reach the run folder
    train = CLI + ['train', '--config', str(cfg)]
    p = subprocess.Popen(
        train, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    deadline = time.time() + 240
    while (
        p.poll() is None
        and time.time() < deadline
        and not (run / 'checkpoint-2' / 'trainer_state.json').exists()
    ):
        time.sleep(0.1)
    p.send_signal(signal.SIGKILL)
    first_log = p.communicate()[0]
    unfinished = not (run / 'report.json').exists()  # a killed run does not look finished
    r = subprocess.run(train + ['--resume'], capture_output=True, text=True, env=env)
    report = json.loads((run / 'report.json').read_text()) if r.returncode == 0 else {}
    resumed = report.get('resumed_from_step', 0)
    finished = unfinished and r.returncode == 0 and report.get('steps') == 6
    fault_log(
        f'kill -9 during training (after checkpoint-2; resumed at step {resumed})',
        1,
        int(finished),
        max(0, 2 - resumed),
    )  # checkpointed steps lost
    assert finished and resumed >= 2, r.stderr[-2000:]
    from qlora_rag.core import ModelConfig
    from qlora_rag.model import load_base_model, load_adapter

    load_adapter(
        load_base_model(ModelConfig(quant='none')), run / 'adapter'
    )  # the final adapter loads
    assert not leaked_secret(run) and SECRET not in first_log + r.stdout + r.stderr


# 3. database restart between and during requests

LOOP = '''
import sys, time
from qlora_rag.core import QloraRagError
from qlora_rag.store import PgVectorStore
store = PgVectorStore(sys.argv[1], url=sys.argv[3])
store.similarity_search('warm up', k=1); print('ready', flush=True)
end = time.time() + float(sys.argv[2])
while time.time() < end:
    try: print('ok', len(store.similarity_search('lantern ferry', k=3)), flush=True)
    except QloraRagError as e: print('error', e, flush=True)
    time.sleep(0.05)
'''
DOWN = "can't connect|lost the database connection"


def test_database_restart(tmp_path, emb, fault_log):
    if not embedded_status()['running']:
        pytest.skip('needs the embedded server that make test starts')
    coll = 'fault_restart'
    drop(coll)
    ingest([make_corpus(tmp_path / 'c', 30)], coll, embeddings=emb)
    url = (
        database_url()
    )  # explicit: with no URL configured, a request would start the server itself
    store = PgVectorStore(coll, emb, url=url)
    assert len(store.similarity_search('lantern', k=3)) == 3
    stop_embedded()
    try:
        store.similarity_search('lantern', k=3)
        clean_while_down = False
    except StoreError as e:
        clean_while_down = bool(re.search(DOWN, str(e)))
    start_embedded()
    between = clean_while_down and len(store.similarity_search('lantern', k=3)) == 3  # reconnected
    p = subprocess.Popen(
        [PY, '-c', LOOP, coll, '14', url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert p.stdout.readline().strip() == 'ready'
    time.sleep(1)
    stop_embedded()
    time.sleep(1.5)
    start_embedded()
    out, err = p.communicate(timeout=120)
    lines = out.splitlines()
    errors = [l for l in lines if l.startswith('error')]
    during = (
        p.returncode == 0
        and 'Traceback' not in err
        and bool(errors)
        and lines[-1] == 'ok 3'
        and all(re.search(DOWN, l) for l in errors)
    )
    fault_log(
        'database restart (between and during requests)',
        2,
        int(between) + int(during),
        30 - rows(coll)[1],
    )
    assert between and during, (err[-2000:], lines[-5:])
    assert rows(coll) == (30, 30)
    store.close()
    drop(coll)


# 4. concurrency: 8 threads searching while an ingest runs


def test_concurrent_search_and_ingest(tmp_path, emb, fault_log):
    coll = 'fault_concurrent'
    drop(coll)
    ingest([make_corpus(tmp_path / 'a', 40, 'first')], coll, embeddings=emb)
    writer = start_ingest(
        make_corpus(tmp_path / 'b', 60, 'second'),
        coll,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    results, errors = [], []

    def client(i):
        store = PgVectorStore(coll, emb)
        try:
            for j in range(15):
                results.append(len(store.similarity_search(f'lantern ferry {i} {j}', k=5)))
        except Exception as e:
            errors.append(repr(e))
        finally:
            store.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out, err = writer.communicate(timeout=300)
    fault_log(
        '8 concurrent search clients during an ingest',
        8 * 15,
        results.count(5),
        100 - rows(coll)[1],
    )
    assert writer.returncode == 0, err[-2000:]
    assert errors == [] and results == [5] * 120
    assert rows(coll) == (100, 100) and index_valid(coll)
    drop(coll)


# 5. hostile and malformed input (in this process: an exception that `main` does not turn into a
#    clean exit propagates and fails the test; real processes' stderr is checked in the cli chapter)


def run_cli(*argv) -> tuple[int, str]:
    import contextlib, io
    from qlora_rag.cli import main

    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, err.getvalue()


HOSTILE = {
    'records': [0, 0],
    'documents': [0, 0],
    'names and filters': [0, 0],
    'config files': [0, 0],
}


def tally(kind: str, clean: bool) -> bool:
    "Count one hostile example of `kind` and whether it ended cleanly."
    HOSTILE[kind][0] += 1
    HOSTILE[kind][1] += bool(clean)
    return clean


values = st.one_of(
    st.text(max_size=50),
    st.text(alphabet=st.characters(codec='utf-8'), max_size=300),
    st.integers(),
    st.none(),
    st.floats(allow_nan=False),
    st.lists(st.text(max_size=5), max_size=3),
    st.just('x' * 20000),
    st.just('a\x00b'),
)
keys = st.sampled_from(['instruction', 'response', 'context', 'category', 'extra'])
records = st.dictionaries(keys, values, max_size=5)


@settings(max_examples=examples(25), deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(records, min_size=1, max_size=6))
def test_hostile_records(tmp_path_factory, rows_):
    f = tmp_path_factory.mktemp('rec') / 'data.jsonl'
    f.write_text('\n'.join(json.dumps(r) for r in rows_))
    code, err = run_cli('data', '--data', str(f), '--max-tokens', '256')
    one_line = code == 2 and err.startswith('qlora-rag: error: ') and err.count('\n') == 1
    assert tally('records', code == 0 or one_line), err


symbols = st.characters(codec='utf-8', categories=['So', 'Lo', 'Zs', 'Cc'])
docs = st.one_of(
    st.text(max_size=2000),
    st.binary(max_size=300),
    st.just(''),
    st.just('\x00' * 10),
    st.just('word ' * 4000),
    st.text(alphabet=symbols, max_size=500),
)


def as_bytes(c) -> bytes:
    return c if isinstance(c, bytes) else c.encode('utf-8', 'surrogatepass')


@settings(max_examples=examples(15), deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(docs, min_size=1, max_size=4))
def test_hostile_documents(tmp_path_factory, emb, contents):
    folder = tmp_path_factory.mktemp('docs')
    for i, c in enumerate(contents):
        (folder / f'd{i}.md').write_bytes(as_bytes(c))
    try:
        report = ingest([folder], 'fault_hostile_docs', embeddings=emb)
        clean = report.files + len(report.skipped) == len(contents)
    except StoreError as e:
        clean = 'nothing to ingest' in str(e)
    if table_exists('fault_hostile_docs'):
        total, distinct = rows('fault_hostile_docs')
        clean = clean and total == distinct
    assert tally('documents', clean)


tricks = [
    "x'; DROP TABLE fault_sql; --",
    'a"b',
    "1 OR 1=1",
    '/* */',
    "'",
    ';',
    '\\',
    "$$",
    "x\x00y",
]
sqlish = st.one_of(st.text(max_size=40), st.sampled_from(tricks))


@pytest.fixture(scope='module')
def sql_store(tmp_path_factory, emb):
    drop('fault_sql')
    ingest([make_corpus(tmp_path_factory.mktemp('sql'), 10)], 'fault_sql', embeddings=emb)
    store = PgVectorStore('fault_sql', emb)
    yield store
    store.close()
    drop('fault_sql')


@settings(max_examples=examples(60), deadline=None, suppress_health_check=list(HealthCheck))
@given(
    name=sqlish, value=st.one_of(sqlish, st.integers(), st.lists(sqlish, max_size=3)), key=sqlish
)
def test_sql_in_names_and_filters(emb, sql_store, name, value, key):
    try:
        check_name(name)
        clean = bool(re.fullmatch(r'[A-Za-z_][A-Za-z0-9_]*', name))  # plain identifier
    except StoreError:
        clean = True
    listed = value if isinstance(value, list) else [value]
    for flt in ({'source': value}, {key: value}, {'source': {'$in': listed}}):
        try:
            sql_store.similarity_search('lantern', k=3, filter=flt)
        except StoreError:
            pass
    assert tally(
        'names and filters', clean and rows('fault_sql') == (10, 10)
    )  # the table is untouched


leaf = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=10)
)
config_values = st.recursive(
    leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
names = st.sampled_from(
    ['max_tokens', 'r', 'quant', 'batch_size', 'learning_rate', 'style', 'k', 'zzz']
)
sections = st.dictionaries(
    st.sampled_from(['data', 'model', 'lora', 'train', 'rag', 'gen', 'other']),
    st.one_of(config_values, st.dictionaries(names, config_values, max_size=4)),
    max_size=4,
)


@settings(max_examples=examples(60), deadline=None, suppress_health_check=list(HealthCheck))
@given(sections)
def test_hostile_config(tmp_path_factory, cfg):
    f = tmp_path_factory.mktemp('cfg') / 'c.json'
    f.write_text(json.dumps(cfg))
    try:
        Config.load(f).check()
        clean = True
    except ConfigError:
        clean = True
    except Exception:
        clean = False
    assert tally('config files', clean)


def test_hostile_summary(fault_log):
    "One row per kind of hostile input: examples tried, and examples that ended cleanly."
    for what, (tried, clean) in HOSTILE.items():
        fault_log(f'hostile input: {what} (hypothesis)', tried, clean, 0)
    assert all(tried > 0 and clean == tried for tried, clean in HOSTILE.values())


# 6. secrets


def url_with_password() -> str:
    "The test database's URL with a password in it (the test server trusts its socket: any works)."
    return re.sub(
        r'^postgresql://([^:@/]*)(:[^@]*)?@', rf'postgresql://\1:{SECRET}@', database_url()
    )


def test_password_never_printed(tmp_path, fault_log):
    url = url_with_password()
    assert SECRET in url
    corpus, qa = make_corpus(tmp_path / 'c', 3), tmp_path / 'qa.jsonl'
    qa.write_text(
        json.dumps(
            dict(question='What does doc 1 tell of?', answer='harbour', source='doc-0001.md')
        )
    )
    down = [
        f'postgresql://me:{SECRET}@127.0.0.1:1/db',
        f'postgresql+psycopg2://me:{SECRET}@127.0.0.1:1/db',
    ]
    runs = [
        (['db', 'url', '--db', url], 0),
        (['ingest', str(corpus), '--collection', 'fault_secret', '--db', url], 0),
        (['search', 'harbour', '--collection', 'fault_secret', '--db', url, '--json'], 0),
        (
            [
                'eval',
                str(qa),
                '--collection',
                'fault_secret',
                '--db',
                url,
                '--no-adapter',
                '--json',
                '--max-new-tokens',
                '4',
            ],
            0,
        ),
        (['search', 'x', '--db', down[0]], 2),
        (['ask', 'x', '--db', down[1], '--no-adapter'], 2),
    ]
    kept = []
    for argv, want in runs:
        r = subprocess.run(CLI + argv, capture_output=True, text=True)
        kept.append(
            r.returncode == want
            and SECRET not in r.stdout + r.stderr
            and 'Traceback' not in r.stderr
        )
    fault_log('password in DB URL (6 commands, ok and failing)', len(runs), sum(kept), 0)
    assert all(kept), kept
    drop('fault_secret')


# 7. unwritable or full output folder


def test_unusable_output_dir(tmp_path, monkeypatch, fault_log):
    blocker = tmp_path / 'a_file'
    blocker.write_text('x')
    r = subprocess.run(
        CLI + ['train', '--output', str(blocker / 'run')], capture_output=True, text=True
    )
    unwritable = (
        r.returncode == 2 and 'is not writable' in r.stderr and 'trainable params' not in r.stdout
    )
    import shutil
    from collections import namedtuple

    usage = namedtuple('usage', 'total used free')
    monkeypatch.setattr(
        shutil, 'disk_usage', lambda p: usage(10 * 2**30, 10 * 2**30 - 50 * 2**20, 50 * 2**20)
    )
    code, err = run_cli('train', '--output', str(tmp_path / 'full'))
    full = (
        code == 2 and 'only 50 MiB free' in err and not list((tmp_path / 'full').iterdir())
    )  # no run
    fault_log(
        'output folder unwritable / disk full (refused before training)',
        2,
        int(unwritable) + int(full),
        0,
    )
    assert unwritable and full, (r.stderr, err)


# 8. the GPU runs out of memory while answering: one line naming the knobs, in a real process

OOM = '''
import sys, torch, transformers
def oom(*args, **kwargs): raise torch.OutOfMemoryError('CUDA out of memory. Tried to allocate 2GB')
transformers.GenerationMixin.generate = oom
from qlora_rag.cli import main
sys.exit(main(sys.argv[1:]))
'''


def test_out_of_memory_while_answering(tmp_path, fault_log):
    qa = tmp_path / 'qa.jsonl'
    qa.write_text(json.dumps(dict(question='What does doc 1 tell of?', answer='harbour')))
    runs = [
        ['ask', 'What does doc 1 tell of?', '--no-adapter', '--no-rag'],
        ['eval', str(qa), '--no-adapter', '--no-rag', '--json'],
    ]
    clean = []
    for argv in runs:
        r = subprocess.run([PY, '-c', OOM, *argv], capture_output=True, text=True)
        clean.append(
            r.returncode == 2
            and r.stderr.count('\n') == 1
            and 'out of GPU memory' in r.stderr
            and '--batch-size' in r.stderr
            and 'Traceback' not in r.stderr
        )
    fault_log('GPU out of memory while answering (ask, eval)', len(runs), sum(clean), 0)
    assert all(clean), r.stderr[-2000:]
