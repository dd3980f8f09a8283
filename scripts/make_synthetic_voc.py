"""Write the synthetic shapes detection dataset (VOC or COCO format), deterministic per seed

`ssd-nobias make-synthetic` once installed; ssd_nobias/commands/make_synthetic.py holds it.
"""
import sys

from ssd_nobias import cli
from ssd_nobias.commands.make_synthetic import main

if __name__ == "__main__":
    sys.exit(cli.run(main))
