"""nbdev's notebook processing for the docs (what `nbdev_proc_nbs` does), without its attempt
to download and install Quarto."""
from nbdev.config import get_config
from nbdev.doclinks import _build_modidx
from nbdev.quarto import refresh_quarto_yml
from nbdev.serve import proc_nbs

if __name__ == '__main__':  # proc_nbs uses worker processes, which re-import this file
    refresh_quarto_yml()
    _build_modidx()
    print('processed notebooks into', proc_nbs(get_config().nbs_path, n_workers=2))
