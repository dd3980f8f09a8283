"""Train a (bias-free) MobileNet-SSD from a YAML config

`ssd-nobias train` once installed; ssd_nobias/commands/train.py holds it.
"""
import sys

from ssd_nobias import cli
from ssd_nobias.commands.train import main

if __name__ == "__main__":
    sys.exit(cli.run(main))
