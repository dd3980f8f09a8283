"""Run a command as one ps-lite job (scheduler, servers, workers) on this machine or over ssh

`ssd-nobias launch` once installed; ssd_nobias/commands/launch.py holds it.
"""
import sys

from ssd_nobias import cli
from ssd_nobias.commands.launch import main

if __name__ == "__main__":
    sys.exit(cli.run(main))
