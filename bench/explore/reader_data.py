"""Two kinds of training data tried for the reader of the real-manual benchmark (neither helped).

- `which OUT --share S`: the bundled set, except that a share S of its closed-QA questions state a
  fact and ask whose it is ("Which call produces a mapping from items to tallies?"), as most of the
  manual's questions do, with drawn values reworded (`GLOSS`) so a question does not copy its
  passage. Such a question is only asked when no other passage of its context states the value.
- `docqa OUT`: the bundled set plus rows made from the manual itself, from pages no benchmark
  question cites: a reference entry (a signature line, then a description that starts with a verb)
  becomes "Which function removes ...?" -> `textwrap.dedent()`, with the chunks hybrid search
  returns for that question as its context (15% without the entry: "The context does not say.").
Train and score a set with bench/raft_sweep.py (`train DIR --only NAME`, `score DIR`); results:
bench/results/reader_data_dev.json.
"""
import argparse, json, random, re
from functools import partial
from pathlib import Path

import qlora_rag.synth as synth
from qlora_rag.prompt import NO_ANSWER

ASK_WHICH = {  # Questions that state one fact, with {value}, and ask whose fact it is
 'person': {'born': ['Who among them was born in {value}?', 'Which person dates from {value}?'],
   'birthplace': ['Who grew up in {value}?', 'Which of these people came from {value}?'],
   'profession': ['Who earned a living as a {value}?', 'Which person followed the {value} trade?'],
   'known_for': ['Who created {value}?', 'Whose name is linked with {value}?'],
   'mentor': ['Who learnt the craft from {value}?', 'Which apprentice did {value} teach?']},
 'town': {'founded': ['Which town dates back to {value}?', 'What place was settled in {value}?'],
   'river': ['Which town stands beside {value}?', 'What settlement grew along {value}?'],
   'product': ['Which town is renowned for {value}?', 'Where do the famous {value} come from?'],
   'mayor': ['Which town does {value} lead?', 'Of which town is {value} the mayor?']},
 'ship': {'launched': ['Which vessel was first afloat in {value}?'],
   'builder': ['Which ship came out of {value}?', 'What vessel did {value} construct?'],
   'captain': ['Which ship did {value} command?', 'What vessel was under {value}?'],
   'home_port': ['Which ship was based at {value}?', 'What vessel called {value} home?']},
 'company': {'founder': ['Which firm did {value} set up?', 'What business was begun by {value}?'],
   'headquarters': ['Which firm is run from {value}?', 'What company has its offices in {value}?'],
   'product': ['Which firm produces {value}?', 'Who manufactures {value}?']},
 'species': {'habitat': ['Which animal is at home in {value}?', 'What creature inhabits {value}?'],
   'diet': ['Which animal lives on {value}?', 'What creature eats mostly {value}?'],
   'discovered_by': ['Which animal did {value} first describe?',
                     'What creature was recorded first by {value}?']},
 'function': {'returns': ['Which function gives you {value}?', 'Which call produces {value}?',
                          'What should you call to get {value}?'],
   'raises': ['Which function can fail with {value}?', 'What call may throw {value}?'],
   'timeout': ['Which function stops waiting after {value} unless told otherwise?'],
   'added': ['Which function is new in {value}?', 'What call first shipped in {value}?'],
   'replaces': ['What superseded {value}?', 'Which newer call should replace {value}?']},
 'setting': {'default': ['Which setting is {value} when nobody sets it?'],
   'env': ['What does the {value} environment variable control?',
           'Which setting can {value} override?'],
   'flag': ['What does the {value} command-line option change?', 'Which setting does {value} set?'],
   'effect': ['Which setting do you turn on to {value}?', 'What should you enable to {value}?']},
}

GLOSS = {  # Other words for a drawn value, so a question need not copy its passage
 'a list of strings': ['a list of str objects', 'several strings in a list'],
 'a new iterator': ['a fresh iterator', 'an iterator it has just created'],
 'a dictionary of counts': ['a mapping from items to tallies', 'a dict of how many times'],
 'a tuple of two integers': ['a pair of ints', 'two whole numbers in a tuple'],
 'a bytes object': ['raw bytes', 'binary data as bytes'],
 'the number of rows written': ['a count of the rows it wrote', 'how many rows were written'],
 'a read-only view': ['a view that cannot be changed', 'an immutable view'],
 'a boolean': ['True or False', 'a truth value'],
 'disables the cache': ['turn caching off', 'stop caching'],
 'turns on verbose logging': ['log in more detail', 'make the logs more verbose'],
 'limits parallel downloads': ['download fewer files at once', 'cap concurrent downloads'],
 'keeps temporary files': ['keep its scratch files', 'not delete temporary files'],
 'skips the checksum test': ['skip verifying checksums', 'not check checksums'],
 'compresses old logs': ['shrink old log files', 'pack old logs'],
 'blue pottery': ['blue ceramics', 'its blue earthenware'], 'rope': ['cordage', 'ropes'],
 'smoked cheese': ['cheese that is smoked'], 'copper bells': ['bells made of copper'],
 'wool blankets': ['woollen blankets'], 'pear brandy': ['a brandy made from pears'],
 'paper lanterns': ['lanterns of paper'], 'honey cakes': ['cakes sweetened with honey'],
 'reed marshes': ['marshland full of reeds'], 'pine forests': ['woods of pine'],
 'chalk cliffs': ['cliffs of chalk'], 'mountain lakes': ['lakes high in the mountains'],
 'river meadows': ['meadows by rivers'], 'salt flats': ['flat salty plains'],
 'snails': ['molluscs such as snails'], 'seeds': ['plant seeds'], 'small fish': ['little fish'],
 'berries': ['fruit such as berries'], 'insects': ['bugs and other insects'],
 'water plants': ['aquatic plants'], 'barometers': ['instruments that measure air pressure'],
 'rail carriages': ['railway coaches'], 'typewriters': ['typing machines'],
 'sewing machines': ['machines for sewing'], 'bicycles': ['bikes'], 'fountain pens': ['ink pens'],
 'radios': ['radio sets'], 'cameras': ['photographic cameras'],
}

def ask(rng, e: dict, a: str, others: list[str], world: dict, which: float) -> tuple[str, str]:
    "As `synth.ask_about`, except that a share `which` of the questions ask whose fact `a` is."
    whiches = ASK_WHICH.get(e['kind'], {}).get(a)
    if which and whiches and rng.random() < which and not any(e[a] in p for p in others):
        value = rng.choice(GLOSS.get(e[a], [e[a]]))
        return synth._cap(rng.choice(whiches).format(value=value)), e['name']
    return synth.ask_about(rng, e, a, others, world)

def which_training_set(which: float, no_answer: float=0.15) -> list[dict]:
    "The bundled set's generator, a share `which` of its closed-QA questions asked the other way."
    plain = synth.closed_qa
    synth.closed_qa = partial(plain, ask=partial(ask, which=which))
    try: return synth.make_training_set(raft=synth.RaftSettings(no_answer=no_answer))
    finally: synth.closed_qa = plain

SIGNATURE = re.compile(r'^(?:class |exception )?([A-Za-z_][\w.]*)(\(.*\))?\s*$')
VERBS = set('''return remove add create make get set raise test compute convert read write open
close start stop run wrap collapse split join find search match replace encode decode parse format
print copy move delete check apply call register build load dump change send receive wait block
release acquire execute evaluate construct produce generate calculate count sort merge insert
append extend update clear reset pop push yield iterate map filter reduce cache store save restore
lock unlock schedule cancel shut bind connect accept listen'''.split())
ASK_DOC = ['Which {kind} {says}?', 'What {kind} {says}?', 'Name the {kind} that {says}.',
           'Which {kind} in this module {says}?',
           'I need something that {says}: which {kind} is it?']

def third_person(verb: str) -> str:
    v = verb.lower()
    if v.endswith('s') and not v.endswith('ss'): return v
    if v.endswith(('sh', 'ch', 'x', 'ss', 'o')): return v + 'es'
    return v[:-1] + 'ies' if v.endswith('y') and v[-2:-1] not in 'aeiou' else v + 's'

def entries(text: str):
    "(name, called, a class, what it does) for each signature line followed by a description."
    lines = [l.strip() for l in text.split('\n')]
    for sig, desc in zip(lines, lines[1:]):
        m = SIGNATURE.match(sig)
        if not m or '.' not in m[1] and not m[2] or len(sig) > 200: continue
        words = re.split(r'(?<=[a-z)])\. ', desc)[0].rstrip('.').split()
        if not 5 <= len(words) <= 30: continue
        verb = words[0]
        if verb.lower() not in VERBS and not (verb.endswith('s') and verb[:-1].lower() in VERBS):
            continue
        yield (m[1], bool(m[2]), sig.startswith(('class ', 'exception ')),
               ' '.join([third_person(verb), *words[1:]]))

def kind_of(name: str, called: bool, is_class: bool) -> str:
    parts = name.split('.')
    if is_class or parts[-1][:1].isupper(): return 'class'
    if not called: return 'attribute'
    return 'method' if len(parts) > 1 and parts[-2][:1].isupper() else 'function'

def docqa_rows(collection: str, n: int=1600, k: int=5, no_answer: float=0.15) -> list[dict]:
    "Closed-QA rows from the collection's reference entries on pages no benchmark question cites."
    from qlora_rag.core import RagConfig
    from qlora_rag.db import connect, database_url
    from qlora_rag.store import PgVectorStore
    cited = {json.loads(l)['source'] for l in open('bench/qa/python_docs_qa.jsonl')}
    with connect(database_url()) as c:
        chunks = c.execute(f'select content, langchain_metadata from {collection}').fetchall()
    found = {}
    for text, meta in chunks:
        if meta['source'] not in cited:
            for e in entries(text): found.setdefault(e[0], e)
    cands = list(found.values())
    rng = random.Random(0)
    rng.shuffle(cands)
    store, rows = PgVectorStore(collection), []
    for name, called, is_class, says in cands[:n]:
        kind = kind_of(name, called, is_class)
        q = rng.choice(ASK_DOC).format(kind=kind, says=says)
        answer = name + ('()' if called and kind != 'class' else '')
        docs = [d.page_content for d, _ in store.retrieve_with_scores(q, RagConfig(k=k + 5))]
        holding = [d for d in docs if name in d]
        if not holding: continue
        if rng.random() < no_answer:
            ctx, answer = [d for d in docs if name.split('.')[-1] not in d][:k], NO_ANSWER
        else:
            ctx = [d for d in docs if d not in holding][:rng.choice(range(2, k + 1)) - 1]
            ctx.append(holding[0])
            rng.shuffle(ctx)
        rows.append(dict(instruction=q, context='\n\n'.join(ctx), response=answer,
                         category='closed_qa'))
    return rows

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('kind', choices=('which', 'docqa'))
    ap.add_argument('out', type=Path, help='training set to write (JSON Lines)')
    ap.add_argument('--share', type=float, default=0.5, help='which: share asked the other way')
    ap.add_argument('--no-answer', type=float, default=0.15, help='which: share without answer')
    ap.add_argument('--collection', default='pydocs_c200_o30', help="docqa: the manual's")
    a = ap.parse_args(argv)
    if a.kind == 'which': rows = which_training_set(a.share, a.no_answer)
    else:  # the bundled set and the manual's rows, shuffled together
        rows = synth.make_training_set() + docqa_rows(a.collection)
        random.Random(0).shuffle(rows)
    a.out.write_text(''.join(json.dumps(r, ensure_ascii=False) + '\n' for r in rows))
    print(len(rows), 'rows in', a.out)

if __name__ == '__main__': main()
