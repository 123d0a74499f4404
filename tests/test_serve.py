"""`qlora-rag serve` as users meet it, in real processes on loopback: the official `openai` client,
many streaming clients at once, clients that leave, hostile request bodies, an API key, secrets,
and the chat page in headless Chromium. The server answers with the bundled model over the bundled
corpus, ingested into the test database that `make test` starts. With $QLORA_RAG_SERVE_ADAPTER set,
it answers with that adapter instead (the docs' screenshot is taken so)."""

import json, os, re, shutil, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import httpx, pytest
from hypothesis import given, settings, strategies as st, HealthCheck
from conftest import examples
from openai import OpenAI
from qlora_rag.core import Config, asset
from qlora_rag.db import database_url
from qlora_rag.pipeline import ingest_corpus
from qlora_rag.serve import ServerProcess

COLLECTION = 'test_serve'
ADAPTER = os.environ.get('QLORA_RAG_SERVE_ADAPTER')
FLAGS = ['--collection', COLLECTION, '--max-new-tokens', '24',
         *(['--adapter', ADAPTER] if ADAPTER else ['--no-adapter'])]
QUESTIONS = ['Who keeps the Ulotor lighthouse?', 'What is in the Brioudro stew?',
             'When is the Peladro festival?', 'What does the Rasucas museum show?',
             'Where does the Venouos ferry go?', 'What is on Droaevenuzel island?',
             'Who built the Venacas lighthouse?', 'What is served at the Selaeyor festival?']
SCREENSHOT = Path(os.environ.get('QLORA_RAG_SCREENSHOT', 'tests/_tmp/serve_page.png'))
SECRET = 'hunter2-db-7781'


@pytest.fixture(scope='module')
def server():
    cfg = Config()
    cfg.store.collection = COLLECTION
    ingest_corpus([asset('corpus')], cfg)
    with ServerProcess(*FLAGS) as s: yield s


def client(server) -> OpenAI:
    return OpenAI(base_url=server.url + '/v1', api_key='unused', max_retries=0)


def metric(server, name: str) -> float:
    "The value of one unlabelled metric (a counter's total or a histogram's count)."
    text = httpx.get(server.url + '/metrics').text
    m = re.search(rf'^{name} ([0-9.e+]+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


def streamed(server, question: str) -> tuple[str, list, bool]:
    "Text, sources and whether the stream ended with [DONE], from a raw SSE read."
    body = dict(messages=[dict(role='user', content=question)], stream=True)
    text, sources, done = '', [], False
    with httpx.stream('POST', server.url + '/v1/chat/completions', json=body, timeout=300) as r:
        assert r.status_code == 200, r.read()
        for line in r.iter_lines():
            if not line.startswith('data: '): continue
            if line == 'data: [DONE]': done = True; continue
            chunk = json.loads(line[6:])
            sources += chunk.get('sources', [])
            if chunk['choices'] and chunk['choices'][0]['delta'].get('content'):
                text += chunk['choices'][0]['delta']['content']
    return text, sources, done


def test_openai_client(server):
    c = client(server)
    ask = [dict(role='user', content=QUESTIONS[0])]
    whole = c.chat.completions.create(model='base', messages=ask)
    parts = list(c.chat.completions.create(model='base', stream=True, messages=ask))
    assert whole.sources and whole.sources[0]['source'] == 'ulotor-lighthouse.md'
    assert parts[0].sources == whole.sources  # sources come first, before any text
    assert ''.join(p.choices[0].delta.content or '' for p in parts if p.choices) \
        == whole.choices[0].message.content
    assert parts[-1].choices[0].finish_reason in ('stop', 'length')
    _, _, done = streamed(server, QUESTIONS[0])
    assert done


def test_concurrent_streams(server, fault_log):
    "8 clients at once: all finish, each gets its own answer and sources, and they shared batches."
    alone = {q: streamed(server, q) for q in QUESTIONS}  # one at a time first
    sizes = [metric(server, f'qlora_rag_batch_size_{s}') for s in ('sum', 'count')]
    first_tokens = metric(server, 'qlora_rag_time_to_first_token_seconds_count')
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda q: streamed(server, q), QUESTIONS))
    ok = sum(t == alone[q] for q, t in zip(QUESTIONS, together))
    fault_log('8 concurrent streaming clients', 8, ok, 0)
    assert ok == 8, [(q, t[0], alone[q][0]) for q, t in zip(QUESTIONS, together) if t != alone[q]]
    added, seen = [metric(server, f'qlora_rag_batch_size_{s}') - n
                   for s, n in zip(('sum', 'count'), sizes)]
    assert added > seen  # some answers were generated together (a size above 1 was seen)
    assert metric(server, 'qlora_rag_time_to_first_token_seconds_count') - first_tokens == 8


def test_client_that_leaves(server, fault_log):
    "A client that gives up while its answer waits is dropped; the server serves the next one."
    before = metric(server, 'qlora_rag_cancelled_total')
    with ThreadPoolExecutor(8) as pool:
        busy = [pool.submit(streamed, server, q) for q in QUESTIONS]  # keeps the batcher busy
        time.sleep(0.5)
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(
                server.url + '/v1/chat/completions', timeout=httpx.Timeout(300, read=0.3),
                json=dict(messages=[dict(role='user', content=QUESTIONS[1])], stream=True))
        [f.result() for f in busy]
    deadline = time.time() + 60
    while metric(server, 'qlora_rag_cancelled_total') <= before and time.time() < deadline:
        time.sleep(0.5)
    left = metric(server, 'qlora_rag_cancelled_total') - before
    text, _, done = streamed(server, QUESTIONS[2])
    fault_log('client disconnects mid-request', 1, int(left == 1 and done), 0)
    assert left == 1 and done and text


BODY = st.recursive(st.none() | st.booleans() | st.integers(-10**9, 10**9) | st.floats()
                    | st.text(max_size=30), lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)
ROLE = st.sampled_from(['user', 'assistant', 'system', 'tool', ''])
MESSAGE = st.fixed_dictionaries({'role': ROLE, 'content': st.one_of(st.text(max_size=40), BODY)})
REQUEST = st.fixed_dictionaries(
    {'messages': st.one_of(st.lists(MESSAGE, max_size=3), BODY)},
    optional={'model': st.sampled_from(['base', 'nope', '']) | BODY,
              'max_tokens': st.integers(-5, 10**6) | BODY, 'temperature': st.floats() | BODY,
              'top_p': st.floats() | BODY, 'stop': st.text(max_size=5) | BODY,
              'k': st.integers(-3, 200),
              'collection': st.sampled_from([COLLECTION, 'nope', "x'; DROP TABLE y"]) | BODY,
              'filter': BODY | st.dictionaries(st.sampled_from(['$and', '$or', 'source', '$in']),
                                                st.lists(BODY, max_size=2) | BODY, max_size=2),
              'rag': st.booleans() | BODY, 'stream': st.booleans(), 'tools': BODY})
CODES = []


@settings(max_examples=examples(60), deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.one_of(REQUEST, BODY))
def test_hostile_bodies(server, body):
    "Python's json writes NaN and Infinity as bare words, which a server must refuse too."
    r = httpx.post(server.url + '/v1/chat/completions', content=json.dumps(body), timeout=300,
                   headers={'content-type': 'application/json'})
    CODES.append(r.status_code)
    assert r.status_code < 500, (body, r.text)
    if r.status_code >= 400: assert 'error' in r.json() and 'Traceback' not in r.text


def test_hostile_bodies_summary(fault_log):
    fault_log('hostile request bodies (hypothesis)', len(CODES), sum(c < 500 for c in CODES), 0)
    assert CODES and all(c < 500 for c in CODES)


@pytest.mark.parametrize('raw, code', [(b'{not json', 400), (b'[1, 2]', 400), (b'', 400),
                                       (b'{"messages": [{"role": "user", "content": "hi"}], '
                                        b'"temperature": NaN}', 400),
                                       (b'{"messages": [], "top_p": Infinity}', 400),
                                       (b'{"messages": "' + b'x' * 70_000 + b'"}', 413)])
def test_raw_bodies(server, raw, code):
    r = httpx.post(server.url + '/v1/chat/completions', content=raw, timeout=60,
                   headers={'content-type': 'application/json'})
    assert r.status_code == code and 'error' in r.json(), r.text


def test_key_and_secrets(server, tmp_path):
    "With a key every request needs it; the database password shows in no response, log or metric."
    url = database_url()
    with_secret = re.sub(r'^(postgresql://[^:@/]*)(:[^@]*)?@', rf'\1:{SECRET}@', url)
    flags = [*FLAGS, '--db', with_secret]
    with ServerProcess(*flags, env=dict(QLORA_RAG_API_KEY='k3y')) as keyed:
        seen = []
        for path in ('/v1/models', '/metrics', '/health'):
            seen.append(httpx.get(keyed.url + path))
            assert seen[-1].status_code == 401, path
        ask = dict(messages=[dict(role='user', content=QUESTIONS[0])])
        seen.append(httpx.post(keyed.url + '/v1/chat/completions', json=ask, timeout=120,
                               headers={'Authorization': 'Bearer wrong'}))
        assert seen[-1].status_code == 401
        auth = {'Authorization': 'Bearer k3y'}
        seen.append(httpx.post(keyed.url + '/v1/chat/completions', json=ask, timeout=120,
                               headers=auth))
        assert seen[-1].status_code == 200
        seen += [httpx.get(keyed.url + p, headers=auth) for p in ('/metrics', '/v1/models', '/')]
        seen.append(httpx.post(keyed.url + '/v1/retrieve', headers=auth,
                               json=dict(query='lighthouse', collection='nope')))
        assert seen[-1].status_code == 404
        keyed.log.seek(0); log = keyed.log.read()
    assert not any(SECRET in r.text for r in seen) and SECRET not in log


def test_chat_page(server):
    "The page in headless Chromium: ask, see the answer stream in and the sources listed."
    from playwright.sync_api import sync_playwright
    chromium = shutil.which('chromium') or shutil.which('chromium-browser')
    assert chromium, 'Chromium is missing: make test installs Debian\'s chromium package'
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=['--no-sandbox'])
        page = browser.new_page(viewport=dict(width=1000, height=640))
        page.goto(server.url + '/')
        page.fill('#question', QUESTIONS[0])
        page.click('#send')
        page.wait_for_selector('.sources li', timeout=120_000)
        page.wait_for_function("document.querySelector('.a').textContent.length > 0 && "
                               "!document.querySelector('#send').disabled", timeout=120_000)
        page.click('.sources li')  # shows the passage
        answer, sources = page.inner_text('.a'), page.locator('.sources li').all_inner_texts()
        passage = page.inner_text('.sources li.open .passage')
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT))
        browser.close()
    assert answer.strip() and 'ulotor-lighthouse.md' in sources[0] and 'Ulotor' in passage
