"Shared pytest setup: the fault suite's summary table (faults injected, survived, rows lost), printed at the end."
import pytest

FAULTS = []

@pytest.fixture
def fault_log():
    "Record one kind of fault: how many were injected, how many the system survived, rows lost."
    def log(what: str, injected: int, survived: int, rows_lost: int): FAULTS.append((what, injected, survived, rows_lost))
    return log

def pytest_terminal_summary(terminalreporter):
    if not FAULTS: return
    w = terminalreporter.write_line
    w(''); w('fault suite summary'); w('| fault | injected | survived | rows lost |'); w('|---|---|---|---|')
    for what, injected, survived, lost in FAULTS: w(f'| {what} | {injected} | {survived} | {lost} |')
