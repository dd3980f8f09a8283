"""Fold BatchNorm into the convolutions and write a deploy graph checked against the trained model

`ssd-nobias export` once installed; ssd_nobias/commands/export.py holds it.
"""
import sys

from ssd_nobias import cli
from ssd_nobias.commands.export import main

if __name__ == "__main__":
    sys.exit(cli.run(main))
