"""Check a whole dataset before a long run: every image decoded, sizes, boxes, classes, ids

`ssd-nobias check-dataset` once installed; ssd_nobias/commands/check_dataset.py holds it.
"""
import sys

from ssd_nobias import cli
from ssd_nobias.commands.check_dataset import main

if __name__ == "__main__":
    sys.exit(cli.run(main))
