"""Audit a model file for biases: an MXNet params file (conv biases, BatchNorm means and betas,

`ssd-nobias audit` once installed; ssd_nobias/commands/audit.py holds it.
"""
import sys

from ssd_nobias import cli
from ssd_nobias.commands.audit import main

if __name__ == "__main__":
    sys.exit(cli.run(main))
