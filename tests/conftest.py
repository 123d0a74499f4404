"""Shared pytest setup: the fault suite's summary table (faults injected, survived, rows lost),
printed at the end, and written as JSON to $QLORA_RAG_FAULTS_JSON when that is set (the README's
table is read from bench/results/faults.json written this way). Hypothesis draws the same inputs on
every run, so a red CI run is reproducible; QLORA_RAG_HYPOTHESIS=N explores N fresh ones each."""
import json, os
import pytest
from hypothesis import settings

EXPLORE = int(os.environ.get('QLORA_RAG_HYPOTHESIS', 0))
settings.register_profile('ci', derandomize=True)
settings.register_profile('explore', derandomize=False)
settings.load_profile('explore' if EXPLORE else 'ci')


def examples(n: int) -> int:
    "How many inputs a hypothesis test draws: `n`, or QLORA_RAG_HYPOTHESIS's count when exploring."
    return EXPLORE or n

FAULTS = []

@pytest.fixture
def fault_log():
    "Record one kind of fault as observed: how many were injected and survived, and rows lost."
    def log(what: str, injected: int, survived: int, rows_lost: int):
        FAULTS.append(dict(fault=what, injected=injected, survived=survived, rows_lost=rows_lost))
    return log

def pytest_terminal_summary(terminalreporter):
    if not FAULTS: return
    w = terminalreporter.write_line
    w(''); w('fault suite summary')
    w('| fault | injected | survived | rows lost |'); w('|---|---|---|---|')
    for f in FAULTS: w(f"| {f['fault']} | {f['injected']} | {f['survived']} | {f['rows_lost']} |")
    if os.environ.get('QLORA_RAG_FAULTS_JSON'):
        with open(os.environ['QLORA_RAG_FAULTS_JSON'], 'w') as out: json.dump(FAULTS, out, indent=1)
