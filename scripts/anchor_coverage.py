"""How well anchor sizes cover a dataset's boxes: the fraction of ground-truth boxes whose best

`ssd-nobias anchors` once installed; ssd_nobias/commands/anchors.py holds it.
"""
import sys

from ssd_nobias import cli
from ssd_nobias.commands.anchors import main

if __name__ == "__main__":
    sys.exit(cli.run(main))
