"""Write the NEON tree-crown dataset (real aerial images, VOC boxes) from the deepforest wheel

`ssd-nobias make-neon-trees` once installed; ssd_nobias/commands/make_neon_trees.py holds it.
"""
import sys

from ssd_nobias import cli
from ssd_nobias.commands.make_neon_trees import main

if __name__ == "__main__":
    sys.exit(cli.run(main))
