"""Train a (bias-free) MobileNet-SSD from a YAML config.

    python scripts/train_ssd.py --config configs/ssd300_mobilenet1.0_voc_nobias.yaml [key=value ...]
"""
import sys

from ssd_nobias import cli
from ssd_nobias.train import train


def main(argv=None) -> int:
    args = cli.parser(__doc__.splitlines()[0]).parse_args(argv)
    cfg = cli.config_from(args)
    result = train(cfg)
    if result is not None:
        print(f"val {result.metric} {result.value:.4f}; outputs in {cfg.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
