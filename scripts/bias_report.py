"""Print which convolutions of a model have no bias once BatchNorm is folded into them

`ssd-nobias bias-report` once installed; ssd_nobias/commands/bias_report.py holds it.
"""
import sys

from ssd_nobias import cli
from ssd_nobias.commands.bias_report import main

if __name__ == "__main__":
    sys.exit(cli.run(main))
