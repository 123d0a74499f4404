#!/usr/bin/env bash
# `make test`: the notebooks are the source (export, clean and README are no-ops), their asserts pass,
# the docs site builds, and the pytest suites pass.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

snapshot() { git ls-files -co --exclude-standard -- nbs qlora_rag README.md | sort | xargs sha1sum; }

echo "== nbdev_export, nbdev_clean and the README must change nothing"
before=$(snapshot)
$BIN/nbdev_export
$BIN/nbdev_clean
$BIN/python tools/readme.py
after=$(snapshot)
if [ "$before" != "$after" ]; then
  echo "FAIL: out of sync; run 'nbdev_export && nbdev_clean && make readme' and commit:"
  diff <(echo "$before") <(echo "$after") | sed -n 's/^> [0-9a-f]*  /  /p'
  exit 1
fi

echo "== code lines fit the docs (<= 100 characters)"
$BIN/python tools/lint.py

echo "== PostgreSQL + pgvector (embedded, fresh data folder, Unix socket only)"
export QLORA_RAG_HOME=$(mktemp -d)
chmod 755 "$QLORA_RAG_HOME"  # as root the server runs as an unprivileged user, which must reach its data folder
export QLORA_RAG_DATABASE_URL=$($BIN/python -W ignore -c 'from qlora_rag.db import start_embedded; print(start_embedded())')
[ -n "$QLORA_RAG_DATABASE_URL" ] || { echo "FAIL: the embedded PostgreSQL did not start"; exit 1; }
trap '$BIN/python -c "from qlora_rag.db import stop_embedded; stop_embedded()" 2>/dev/null; rm -rf "$QLORA_RAG_HOME"' EXIT
echo "started: $QLORA_RAG_DATABASE_URL"

echo "== notebooks (nbdev_test)"
n=$(ls nbs/*.ipynb nbs/explanations/*.ipynb | wc -l)
if $BIN/nbdev_test --n_workers 2 --timing; then echo "nbdev_test: $n passed, 0 failed"
else echo "nbdev_test: notebooks failed (see above)"; exit 1; fi

echo "== docs site"
bash tools/docs.sh

echo "== headless Chromium for the chat page's browser test (Debian's chromium package)"
if ! command -v chromium >/dev/null; then
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null
fi
chromium --version

echo "== pytest (the served API and chat page, LangChain's standard vector-store suite, ...)"
$BIN/pytest -q -p no:cacheprovider tests
