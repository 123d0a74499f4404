#!/usr/bin/env bash
# Render the docs site into _docs/: nbdev_docs where Quarto is installed, else nbdev's notebook processing (tools/proc_nbs.py) + smalldocs.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
rm -rf _docs _proc
if command -v quarto >/dev/null; then
  $BIN/nbdev_docs
else
  $BIN/python tools/proc_nbs.py
  cp nbs/styles.css _proc/ 2>/dev/null || true
  $BIN/smalldocs render --quiet _proc
  [ -d _proc/_docs ] && mv _proc/_docs _docs
fi
# Every notebook must have become a page.
missing=0
for nb in nbs/*.ipynb nbs/explanations/*.ipynb; do
  page="_docs/${nb#nbs/}"; page="${page%.ipynb}.html"
  [ -s "$page" ] || { echo "docs: missing page $page"; missing=1; }
done
[ $missing = 0 ] && echo "docs: $(ls nbs/*.ipynb nbs/explanations/*.ipynb | wc -l) pages in _docs/"
exit $missing
