"""How well anchor sizes cover a dataset's boxes.

The fraction of ground-truth boxes whose best anchor has IoU >= 0.5, by box size, for candidate
presets on the config's model.

    python scripts/anchor_coverage.py --config C.yaml [--split train] [--images N]
        [--presets gluoncv ssd lite] [--coco-like N] [--out FILE.json]

--coco-like N adds N boxes drawn with COCO's size mix (ssd_nobias/model/anchors.py says how), for a
model meant for small objects when the dataset at hand is not COCO.
"""

from ssd_nobias import cli
from ssd_nobias.model.anchors import (ANCHOR_PRESETS, coco_like_boxes, coverage, dataset_boxes,
                                      format_coverage, ssd_anchors_np)
from ssd_nobias.atomic import write_json
from ssd_nobias.config import base_size


def main(argv=None) -> int:
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("--split", choices=["train", "val"], default="train")
    p.add_argument("--images", type=int, default=0, metavar="N",
                   help="read at most N images of the split (default: all)")
    p.add_argument("--presets", nargs="+", choices=sorted(ANCHOR_PRESETS),
                   default=list(ANCHOR_PRESETS))
    p.add_argument("--coco-like", type=int, default=0, metavar="N",
                   help="also N boxes with COCO's size mix")
    p.add_argument("--out", metavar="FILE.json", help="also write the figures here")
    args = p.parse_args(argv)
    from ssd_nobias.data.datasets import build_dataset  # MXNet: after --help
    from ssd_nobias.model.ssd import preset

    cfg = cli.config_from(args)
    size = base_size(cfg)
    layout = preset(cfg.model.name)
    candidates = {name: ANCHOR_PRESETS[name] for name in args.presets}
    if list(cfg.model.anchor_sizes):
        candidates["config"] = tuple(cfg.model.anchor_sizes)
    sets = {f"{cfg.data.dataset} {args.split}": dataset_boxes(build_dataset(cfg, args.split),
                                                             size, args.images)}
    if args.coco_like:
        sets["COCO-like"] = coco_like_boxes(args.coco_like, size)
    report = {"model": cfg.model.name, "steps": list(layout.steps), "presets": {}}
    for title, boxes in sets.items():
        results = {name: coverage(boxes, ssd_anchors_np(sizes, layout.steps, layout.ratios, size))
                   for name, sizes in candidates.items()}
        print(format_coverage(results, f"{title}: {len(boxes)} boxes at {size} px, fraction "
                                       f"with an anchor of IoU >= 0.5"))
        report["presets"][title] = {
            name: {"sizes": list(candidates[name]), "all": total,
                   "buckets": [{"size_px": [b.low, b.high if b.high != float("inf") else None],
                                "boxes": b.boxes, "covered": b.covered if b.boxes else None}
                               for b in buckets]}
            for name, (total, buckets) in results.items()}
    if args.out:
        write_json(args.out, report)
    return 0

