"Loaded by the servers `ttft_trace.py` starts: the switch interval, async batching and the trace."
import os, sys
if os.environ.get('QLORA_RAG_SWITCH'): sys.setswitchinterval(float(os.environ['QLORA_RAG_SWITCH']))
if os.environ.get('QLORA_RAG_ASYNC'):
    from transformers import ContinuousBatchingConfig as C
    _post = C.__post_init__
    def _async(self): self.use_async_batching = True; _post(self)
    C.__post_init__ = _async
if os.environ.get('QLORA_RAG_TRACE'):
    sys.path.insert(0, os.path.dirname(__file__)); import trace_serve  # noqa
