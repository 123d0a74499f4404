"LangChain's standard vector-store suite (sync and async) against PgVectorStore."
import pytest
from langchain_tests.integration_tests import VectorStoreIntegrationTests
from qlora_rag.store import PgVectorStore, drop_collection
from qlora_rag.db import connect

COLLECTION = 'langchain_standard'

def _drop():
    with connect() as conn: drop_collection(conn, COLLECTION)

class TestPgVectorStore(VectorStoreIntegrationTests):
    @pytest.fixture()
    def vectorstore(self):
        _drop()
        store = PgVectorStore(COLLECTION, self.get_embeddings())
        try: yield store
        finally:
            store.close(); _drop()
