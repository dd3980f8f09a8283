"""Detect objects in your own images, folders of images or videos, with any exported or trained model

`ssd-nobias detect` once installed; ssd_nobias/commands/detect.py holds it.
"""
import sys

from ssd_nobias import cli
from ssd_nobias.commands.detect import main

if __name__ == "__main__":
    sys.exit(cli.run(main))
