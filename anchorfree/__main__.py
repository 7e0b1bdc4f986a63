"""``python -m anchorfree``: the command line.

Also the entry point of each process under PyTorch's launcher, e.g.
``torchrun --nproc_per_node 4 -m anchorfree train fcos_r50_fpn --data coco.yaml --out runs/r50``
(``anchorfree train --nproc 4 ...`` starts the same launcher on one machine).
"""
from .cli import main

if __name__ == "__main__":  # not when a spawned subprocess re-imports this module
    raise SystemExit(main())
