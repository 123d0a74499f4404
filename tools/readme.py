"""Write README.md from nbs/index.ipynb, as nbdev_readme does where Quarto is installed: markdown
cells as they are, code cells with their outputs (markdown outputs as markdown); `#| hide` cells are
left out and `#| echo: false` cells show only their output."""
import json, pathlib
root = pathlib.Path(__file__).resolve().parent.parent
nb = json.loads((root/'nbs'/'index.ipynb').read_text(encoding='utf-8'))

def outputs(cell):
    for o in cell.get('outputs', []):
        data = o.get('data', {})
        if 'text/markdown' in data: yield ''.join(data['text/markdown']).strip()
        elif o.get('text') or 'text/plain' in data:
            yield '```\n' + ''.join(o.get('text') or data['text/plain']).rstrip('\n') + '\n```'

def render(cell):
    src = ''.join(cell['source']).rstrip()
    if cell['cell_type'] == 'markdown': return [src]
    if not src or src.startswith('#| hide'): return []
    code = [] if '#| echo: false' in src else [f'```python\n{src}\n```']
    return code + list(outputs(cell))

parts = [p for cell in nb['cells'] for p in render(cell)]
readme = '\n\n'.join(parts) + '\n'
for target in ('explanations/', '0', '1', '2', '3', '4'):  # notebook links work from the repo root
    readme = readme.replace(f']({target}', f'](nbs/{target}')
note = ('<!-- Generated from nbs/index.ipynb by `make readme`: '
        'edit the notebook, not this file. -->\n\n')
(root/'README.md').write_text(note + readme, encoding='utf-8')
