"""Compare training runs: one row per run and their curves side by side in one picture.

`ssd-nobias compare` once installed; ssd_nobias/commands/compare.py holds it.
"""
import sys

from ssd_nobias import cli
from ssd_nobias.commands.compare import main

if __name__ == "__main__":
    sys.exit(cli.run(main))
