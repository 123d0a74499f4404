"""Per-request timestamps inside `qlora-rag serve` (continuous batching), one JSON line each in
$QLORA_RAG_TRACE: arrival, hand-over to the manager, admission into a step, first token, read,
first text sent, first text seen by the event loop; and each answer's mean decoding step."""
import json, os, time
import qlora_rag.serve as S

_out = open(os.environ['QLORA_RAG_TRACE'], 'a', buffering=1)
_add, _deliver, _submit = S.StepBatcher._add, S.StepBatcher._deliver, S.Batcher.submit

def add(self, job):
    job.t_take = time.perf_counter()
    m = self.manager
    if not getattr(m, 'traced', False):
        orig = m.add_request
        m.add_request = lambda *a, **k: orig(*a, **{**k, 'record_timestamps': True})
        m.traced = True
    return _add(self, job)

def deliver(self, out):
    row = self.rows.get(out.request_id)
    if row is not None and row.seen == 0 and out.generated_tokens:
        j = row.job
        j.t_created, j.t_sched, j.t_first = out.created_time, out.lifespan[0], out.timestamps[0]
        j.t_read = time.perf_counter()
    if row is not None and out.timestamps and len(out.timestamps) > 1:
        ts = out.timestamps
        row.job.step = (ts[-1] - ts[0]) / (len(ts) - 1)
    return _deliver(self, out)

def submit(self, job):
    "Called by `Server.submit` on the event loop, after it set `job.send`: wrap that to time it."
    import asyncio
    loop, send = asyncio.get_running_loop(), job.send
    def traced(e):
        if 'text' in e and not hasattr(job, 't_send'):
            job.t_send = time.perf_counter()
            def seen():
                job.t_loop = time.perf_counter()
                keys = ('arrived', 't_take', 't_created', 't_sched', 't_first', 't_read', 't_send',
                        't_loop')
                _out.write(json.dumps({k: getattr(job, k, None) for k in keys}) + '\n')
            loop.call_soon_threadsafe(seen)
        if 'finish' in e and hasattr(job, 'step'):
            _out.write(json.dumps(dict(step=job.step)) + '\n')
        send(e)
    job.send = traced
    _submit(self, job)

S.StepBatcher._add, S.StepBatcher._deliver, S.Batcher.submit = add, deliver, submit
