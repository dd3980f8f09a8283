"""Train a (bias-free) MobileNet-SSD from a YAML config.

    python scripts/train_ssd.py --config configs/ssd300_mobilenet1.0_voc_nobias.yaml [key=value ...]
    python scripts/train_ssd.py --print-config [--config C.yaml] [key=value ...]
    python scripts/train_ssd.py --list-models
"""

from ssd_nobias import cli
from ssd_nobias.config import describe


def main(argv=None) -> int:
    p = cli.parser(__doc__.splitlines()[0], config_required=False)
    p.add_argument("--overwrite", action="store_true",
                   help="output_dir holds a finished or stopped run: remove its checkpoints, "
                        "metrics, logs and pictures first, then start a new run there")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config (every key, its default where it differs, "
                        "what it does) and exit")
    p.add_argument("--list-models", action="store_true", help="print model.name choices")
    args = p.parse_args(argv)
    # MXNet is imported only now: --help answers at once
    from ssd_nobias.engine.train import train
    from ssd_nobias.model.ssd import MODEL_NAMES

    if args.list_models:
        print("\n".join(MODEL_NAMES))
        return 0
    cfg = cli.config_from(args)
    if args.print_config:
        print(describe(cfg))
        return 0
    if not args.config:
        p.error("--config is required to train")
    result = train(cfg, overwrite=args.overwrite)
    if result is not None:
        print(f"val {result.metric} {result.value:.4f}; outputs in {cfg.output_dir}")
    return 0

