"Load + split the installed Python 3.11 HTML docs; prints counts, token sizes and times."
import json, sys, time, warnings
from collections import Counter

from qlora_rag.ingest import load_documents, split_documents
from qlora_rag.embed import SentenceEmbeddings
root = '/usr/share/doc/python3.11/html'
emb = SentenceEmbeddings(); tok = emb.tokenizer
t0 = time.time(); docs, skipped = load_documents([root]); t1 = time.time()
size, overlap = (int(a) for a in sys.argv[1:3]) if len(sys.argv) > 2 else (200, 30)
chunks = split_documents(docs, tok, size, overlap, emb.model.max_seq_length); t2 = time.time()
lens = [len(ids) - 2 for ids in tok([c.page_content for c in chunks], verbose=False)['input_ids']]
files = len({d.metadata['source'] for d in docs})
import os
res = dict(load_avg_1m=round(os.getloadavg()[0], 1), cores=os.cpu_count(), chunk_size=size,
           overlap=overlap, files=files, skipped=len(skipped), sections=len(docs),
           chunks=len(chunks), max_tokens=max(lens), mean_tokens=round(sum(lens) / len(lens), 1),
           under_32=sum(l < 32 for l in lens), load_s=round(t1 - t0, 1), split_s=round(t2 - t1, 1))
print(json.dumps(res))
print(Counter(skipped.values()).most_common())
print(sorted(skipped)[:40])
