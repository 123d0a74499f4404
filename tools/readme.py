"Write README.md from nbs/index.ipynb (markdown cells as they are, code cells with their text outputs), as nbdev_readme does where Quarto is installed."
import json, pathlib
root = pathlib.Path(__file__).resolve().parent.parent
nb = json.loads((root/'nbs'/'index.ipynb').read_text(encoding='utf-8'))

def outputs(cell):
    for o in cell.get('outputs', []):
        text = o.get('text') or o.get('data', {}).get('text/plain')
        if text: yield ''.join(text).rstrip('\n')

parts = []
for cell in nb['cells']:
    src = ''.join(cell['source']).rstrip()
    if cell['cell_type'] == 'markdown': parts.append(src)
    elif src and not src.startswith('#| hide'):
        parts.append(f'```python\n{src}\n```')
        parts += [f'```\n{t}\n```' for t in outputs(cell)]
readme = '\n\n'.join(parts) + '\n'
readme = readme.replace('](0', '](nbs/0')  # links to other notebooks work from the repo root
(root/'README.md').write_text('<!-- Generated from nbs/index.ipynb by `make readme`: edit the notebook, not this file. -->\n\n' + readme, encoding='utf-8')
