"""Code lines stay short enough that the docs never scroll sideways: notebook code cells and
scripts, at most 100 characters."""
import json, pathlib, sys
LIMIT, root = 100, pathlib.Path(__file__).resolve().parent.parent

def code_lines(path: pathlib.Path):
    if path.suffix == '.ipynb':
        for i, cell in enumerate(json.loads(path.read_text(encoding='utf-8'))['cells']):
            if cell['cell_type'] != 'code': continue
            for line in ''.join(cell['source']).splitlines(): yield f'cell {i}', line
    else:
        for n, line in enumerate(path.read_text(encoding='utf-8').splitlines(), 1):
            yield f'line {n}', line

scripts = [p for d in ('tests', 'tools', 'bench') for p in sorted((root/d).rglob('*.py'))]
files = sorted(root.glob('nbs/**/*.ipynb')) + scripts
long = [(p.relative_to(root), where, len(line))
        for p in files for where, line in code_lines(p) if len(line) > LIMIT]
for path, where, n in long: print(f'{path} {where}: {n} characters (limit {LIMIT})')
print(f'lint: {len(files)} files, {len(long)} lines over {LIMIT} characters')
sys.exit(1 if long else 0)
