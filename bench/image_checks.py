"""What reading an image whole costs: read_image (end-of-file check + decode) and the dataset's
size check against a plain mx.image.imread, on the same files, in alternating rounds.

    python bench/image_checks.py [--images 200] [--rounds 5] [--data data/synthetic]
"""
import argparse
import statistics
import sys
import tempfile
import time

import mxnet as mx

from ssd_nobias.data.voc import VOCFormatDetection
from ssd_nobias.data.images import read_image
from ssd_nobias.data.synthetic import SHAPE_CLASSES, make_synthetic


def per_image_ms(read, paths) -> float:
    start = time.perf_counter()
    for path in paths:
        read(path).wait_to_read()  # MXNet decodes asynchronously
    return 1000 * (time.perf_counter() - start) / len(paths)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=200)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--data", help="a voc_custom folder (default: a synthetic one, generated)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data or make_synthetic(tmp, train=args.images, val=1, seed=0)["root"]
        dataset = VOCFormatDetection(root, [("", "train")], SHAPE_CLASSES)
        n = min(args.images, len(dataset))
        paths = [dataset.image_path(i) for i in range(n)]
        variants = {"mx.image.imread (no checks)": lambda path: mx.image.imread(path, 1),
                    "read_image (whole-file check)": read_image}
        indices = iter(range(10 ** 9))
        variants["dataset[i] (read_image + size check)"] = \
            lambda path: dataset[next(indices) % n][0]
        times = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, read in variants.items():
                times[name].append(per_image_ms(read, paths))
    base = statistics.median(times["mx.image.imread (no checks)"])
    print(f"{n} images, median of {args.rounds} alternating rounds, one thread of Python:")
    for name, values in times.items():
        ms = statistics.median(values)
        print(f"  {name:40s} {ms:7.3f} ms/image  {ms / base:6.3f}x")


if __name__ == "__main__":
    sys.exit(main())
