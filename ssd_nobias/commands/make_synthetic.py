"""Write the synthetic shapes detection dataset (VOC, COCO or YOLO format), deterministic per seed.

    python scripts/make_synthetic_voc.py --out data/synthetic [--train 200 --val 50 --test 0
        --size 300 --seed 0 --layout custom|voc2007 --format voc|coco|yolo --variant shapes|hard]
"""
import argparse
import sys

from ssd_nobias.atomic import stopping_on_signals
from ssd_nobias.data.synthetic import VARIANTS, make_synthetic


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True,
                   help="output folder: new, empty, or one this command wrote (replaced whole)")
    p.add_argument("--train", type=int, default=200, help="training images")
    p.add_argument("--val", type=int, default=50, help="validation images")
    p.add_argument("--test", type=int, default=0,
                   help="test images, a split of their own (layout custom only; default none)")
    p.add_argument("--size", type=int, default=300, help="typical image side (varies +-25%%)")
    p.add_argument("--seed", type=int, default=0, help="the generator's seed: same seed, same "
                                                       "dataset")
    p.add_argument("--layout", choices=["custom", "voc2007"], default="custom",
                   help="custom: a VOC-format folder with classes.txt; voc2007: "
                        "VOCdevkit/VOC2007 with VOC class names")
    p.add_argument("--format", dest="fmt", choices=["voc", "coco", "yolo"], default="voc",
                   help="voc, coco (instances_*.json), or yolo (data.yaml, "
                        "images/ and labels/ as Ultralytics writes them)")
    p.add_argument("--variant", choices=list(VARIANTS), default="shapes",
                   help="shapes: four classes (the demo's); hard: eight classes, more and "
                        "smaller objects")
    args = p.parse_args(argv)
    try:
        with stopping_on_signals():  # a stopped build leaves no half dataset beside --out
            info = make_synthetic(args.out, args.train, args.val, args.size, args.seed,
                                  args.layout, args.fmt, args.variant, args.test)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    counts = ", ".join(f"{n} {k}" for k, n in info["counts"].items())
    print(f"wrote {counts} images ({info['variant']}, {info['format']}, {info['layout']}) to "
          f"{info['root']}; classes: {', '.join(info['classes'])}")
    return 0

