"""Write the NEON tree-crown dataset (real aerial images, VOC boxes) from the deepforest wheel.

    python scripts/make_neon_trees.py --out data/neon_trees [--cache data/cache --tile 200
        --fractions 0.4 0.3 0.3 | --folds 3 --fold 0]

The wheel (deepforest==2.1.0, sha256 checked) is downloaded once into --cache by pip; the
tiling and split rules are in ssd_nobias/data/neon_trees.py.
"""
import argparse

from ssd_nobias.atomic import stopping_on_signals


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True,
                   help="output folder: new, empty, or one this command wrote (replaced whole)")
    p.add_argument("--cache", default="data/cache", help="where the wheel is kept")
    p.add_argument("--tile", type=int, default=200, help="tile side in source pixels")
    p.add_argument("--fractions", type=float, nargs=3, default=[0.4, 0.3, 0.3],
                   metavar=("TRAIN", "VAL", "TEST"),
                   help="band heights of the large same-site crop")
    p.add_argument("--folds", type=int, default=0, metavar="K",
                   help="spatial cross-validation instead: the large crop in K >= 3 equal "
                        "bands (gaps kept), band --fold tests, the next validates, the rest "
                        "train; 0: the three --fractions bands")
    p.add_argument("--fold", type=int, default=0, metavar="k", help="which fold, 0..K-1")
    args = p.parse_args(argv)
    from ssd_nobias.data.neon_trees import fetch_wheel, make_neon_trees  # MXNet: after --help

    with stopping_on_signals():  # a stopped build leaves no half dataset beside --out
        summary = make_neon_trees(args.out, fetch_wheel(args.cache), args.tile, args.fractions,
                                  args.folds, args.fold)
    for split, c in summary["counts"].items():
        print(f"{split:15s} {c['tiles']:4d} tiles {c['boxes']:5d} boxes ({c['difficult']} "
              f"difficult)")
    print(f"wrote {args.out}")
    return 0

