"""Execute notebooks in place, as nbdev_test does (flagged cells such as `#| gpu` and `#| slow` are
skipped), and keep the outputs for the docs."""
import os, sys
from pathlib import Path
from execnb.nbio import read_nb, write_nb
from execnb.shell import CaptureShell
from nbdev.config import get_config
from nbdev.process import extract_directives

flags = set(get_config().tst_flags.split())
# Outputs are documentation: keep library progress bars and deprecation notices out of them.
os.environ.update(
    HF_HUB_DISABLE_PROGRESS_BARS='1', TRANSFORMERS_VERBOSITY='error', TQDM_DISABLE='1',
    PYTHONWARNINGS='ignore', XDG_RUNTIME_DIR=os.environ.get('XDG_RUNTIME_DIR', '/tmp'))
import logging, warnings
warnings.filterwarnings('ignore'); logging.getLogger('bitsandbytes').setLevel(logging.ERROR)

def skip(cell):
    "Skip markdown, flagged cells and `eval: false` cells, like nbdev_test."
    if cell.cell_type != 'code': return True
    direc = extract_directives(cell, remove=False) or {}
    return bool(flags & direc.keys()) or direc.get('eval:', [''])[0].lower() == 'false'

for fn in map(Path, sys.argv[1:]):
    nb = read_nb(fn)
    for cell in nb.cells:  # execnb keeps a cell's old outputs unless they are cleared first
        if cell.cell_type == 'code': cell.outputs, cell.execution_count = [], None
    cwd = Path.cwd(); os.chdir(fn.parent.resolve())
    CaptureShell(path=fn.parent).run_all(nb, exc_stop=True, preproc=skip)
    write_nb(nb, fn.name); os.chdir(cwd); print('executed', fn)
