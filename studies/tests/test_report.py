"""The study report (studies/scripts/study_trees_report.py): the protocol's verdicts, and the whole
report
assembled from stand-in run records and detections of known AP (no training)."""
import gzip
import json
import os
import shutil
import sys

import numpy as np
import pytest

from ssd_nobias_studies import runner as study_trees, report

KEPT = study_trees.kept_splits(study_trees.PROTOCOL["splits"])  # test and test_othersite


GT = [[[10 + 60 * j, 10, 50 + 60 * j, 50, 0, 0]] for j in range(3)] * 4  # 12 images


def detections(quality):
    """Per-image records: every object found ('good'), half of them off by more than IoU 0.5
    ('half'), or nothing ('none')."""
    out = []
    for i, gt in enumerate(GT):
        box, score = list(gt[0][:4]), 0.9
        if quality == "half" and i % 2:  # a miss, scored below every hit
            box, score = [box[0] + 30, box[1], box[2] + 30, box[3]], 0.5
        found = quality != "none"
        out.append({"id": f"t{i}", "boxes": [box] if found else [], "labels": [0] if found else [],
                    "scores": [score] if found else [], "gt": gt})
    return out


def record(run, ap50):
    splits = {s: {"ap50": ap50, "ap": ap50 / 2, "coco_ap50": ap50, "ap75": 0.0, "images": 12}
              for s in study_trees.PROTOCOL["splits"]}
    return {"run": run.key, "arm": run.arm, "k": run.k, "lr": run.lr, "warmup": run.warmup,
            "seed": run.seed, "cpu": {"model": "test"}, "val_curve": [[30, ap50], [60, ap50]],
            "loss_curve": [[1, 5.0, 3.0, 2.0], [60, 3.0, 2.0, 1.0]], "splits": splits,
            "dead_fraction": [0.0, 0.1]}


def add_arm(out, arm, quality):
    """Records and detections of every run the protocol asks of `arm` (best lr at k = 0), its
    detections of the given quality; a stock arm's shift-dropped export finds nothing, (a)'s
    INT8 pair equals its float."""
    val = {}
    while True:
        run = study_trees.plan(arm, val)
        if not isinstance(run, study_trees.Run):
            return
        val[(run.k, run.warmup, run.seed)] = 0.5 - 0.01 * abs(run.k)  # best at k = 0
        r = record(run, {"good": 1.0, "half": 0.5, "none": 0.0}[quality])
        dets = {arm: {s: detections(quality) for s in KEPT}}
        r["splits"]["val"]["ap50"] = val[(run.k, run.warmup, run.seed)]
        if arm == "nobias":
            r["int8"] = {p: dict(r["splits"]["test"]) for p in ("float32_pair", "int8_pair")}
            dets.update({f"nobias_{p}": {"test": detections("good")}
                         for p in ("float32_pair", "int8_pair")})
        if arm in study_trees.ZERO_SHIFT:
            name = study_trees.ZERO_SHIFT[arm]
            r[name] = {"splits": record(run, 0.0)["splits"], "max_shift": 1.0,
                       "median_shift": 0.5}
            dets[name] = {s: detections("none") for s in KEPT}
        study_trees.save(out, r, dets)


@pytest.fixture
def study_out(tmp_path):
    """Records and detections of (a) and (b), every run the protocol asks for: (a) finds every
    crown, (b) half of them, (c) (b's shifts dropped) none; (a)'s INT8 pair equals its float."""
    out = str(tmp_path)
    add_arm(out, "nobias", "good")
    add_arm(out, "batchnorm", "half")
    return out


def run_report(out, monkeypatch, *options, samples=50):
    """Run the report on OUT's records and detections, as the command line would; its study.json."""
    monkeypatch.setattr(sys, "argv", ["study_trees_report.py", "--out", out, "--samples",
                                      str(samples), *options])
    report.main()
    with open(os.path.join(out, "study.json")) as f:
        return json.load(f)


def test_report_from_records(study_out, monkeypatch, capsys):
    out = run_report(study_out, monkeypatch, samples=200)
    assert out["settings"]["nobias"] == dict(out["settings"]["nobias"], done=True, k=0,
                                             lr=0.025, warmup=50)
    assert out["arms"]["nobias"]["test"]["ap50"]["n"] == 5
    assert out["comparisons"]["best_stock"] == {"ap50": "batchnorm", "ap": "batchnorm"}
    assert out["comparisons"]["stock_pending"] == ["batchnorm_reparam", "batchnorm_uncentered"]
    test = {(c["arm"], c["other"], c["metric"]): c for c in out["comparisons"]["test"]}
    a_b = test[("nobias", "batchnorm", "ap50")]
    # (b): precision 1 up to recall 0.5, then nothing: 6 of VOC07's 11 recall points, 51 of
    # COCO's 101 at every IoU
    assert a_b["difference"] == pytest.approx(1 - 6 / 11)
    assert test[("nobias", "batchnorm", "ap")]["difference"] == pytest.approx(1 - 51 / 101)
    assert a_b["verdict"] == "superior" and a_b["low"] > 0 and a_b["direction"] == "ahead"
    # verdicts read the two-level interval; the image-only one is kept beside it
    assert a_b["levels"] == "seeds, images" and a_b["image_only"]["levels"] == "images"
    assert a_b["image_only"]["low"] > 0
    naive = test[("naive", "nobias", "ap50")]
    assert naive["difference"] == pytest.approx(-1.0) and naive["verdict"] == "inferior"
    assert out["comparisons"]["int8"]["difference"] == 0.0
    assert out["comparisons"]["int8"]["verdict"] == "non-inferior"
    assert os.path.isfile(os.path.join(study_out, "study.png"))
    flat = out["flat_schedule"]["nobias"]
    assert (flat["from_epoch"], flat["to_epoch"], flat["change_points"]) == (40, 60, 0.0)
    printed = capsys.readouterr().out
    assert "| (a) NoBiasBatchNorm, the recipe | 0.025 | 50 | 100.0 +- 0.0 (100.0) |" in printed
    assert (f"| (a) - best finished stock arm, (b) | {100 * (1 - 6 / 11):+.2f} [") in printed
    assert ("| (a) INT8 pair - (a) float32 pair | +0.00 [+0.00, +0.00] non-inferior; images only "
            "[+0.00, +0.00] |  |") in printed
    assert "nobias: mean val AP50" in printed and "at epoch 40" in printed
    assert ("not finished: batchnorm_reparam, batchnorm_uncentered, so a verdict against it is "
            "provisional") in printed


def test_a_verdict_is_final_once_every_stock_arm_is_finished(study_out, capsys, monkeypatch):
    for arm in ("batchnorm_reparam", "batchnorm_uncentered"):  # both finish, neither detects
        add_arm(study_out, arm, "none")
    comparisons = run_report(study_out, monkeypatch)["comparisons"]
    assert comparisons["stock_pending"] == []
    assert comparisons["best_stock"] == {"ap50": "batchnorm", "ap": "batchnorm"}
    test = {(c["arm"], c["other"], c["metric"]): c for c in comparisons["test"]}
    assert test[("uncentered_zero_shift", "nobias", "ap50")]["verdict"] == "inferior"
    assert "provisional" not in capsys.readouterr().out


def test_a_study_of_fewer_arms_chooses_its_best_stock_arm_among_them(study_out, capsys,
                                                                      monkeypatch):
    comparisons = run_report(study_out, monkeypatch, "--arms", "nobias",
                             "batchnorm")["comparisons"]
    assert comparisons["stock_pending"] == []
    assert comparisons["best_stock"] == {"ap50": "batchnorm", "ap": "batchnorm"}
    printed = capsys.readouterr().out
    assert "| (a) - best stock arm, (b) |" in printed and "provisional" not in printed


def test_report_lists_an_arm_still_in_tuning(study_out, capsys, monkeypatch):
    for name in os.listdir(os.path.join(study_out, "runs")):
        if name.startswith("batchnorm") and "-k0-w50-" not in name:
            os.remove(os.path.join(study_out, "runs", name))
    out = run_report(study_out, monkeypatch)
    assert out["settings"]["batchnorm"]["done"] is False
    assert out["comparisons"]["test"] == [] and "int8" in out["comparisons"]
    assert "batchnorm: tuning, 5 runs, next batchnorm-k-2-w50-s1" in capsys.readouterr().out


def test_detection_files_hold_what_the_report_reads(study_out):
    name = next(n for n in os.listdir(os.path.join(study_out, "detections"))
                if n.startswith("nobias"))
    with gzip.open(os.path.join(study_out, "detections", name), "rt") as f:
        held = json.load(f)
    assert set(held) == {"nobias", "nobias_float32_pair", "nobias_int8_pair"}
    assert len(held["nobias"]["test"]) == len(GT)
    np.testing.assert_array_equal(held["nobias"]["test"][0]["gt"], GT[0])


def test_a_published_study_recomputes_from_its_matches_alone(study_out, tmp_path, monkeypatch):
    """--publish: the records the report read, its outputs and the final runs' matches (no
    boxes, no tuning run's) in another folder, from which the report gives the same study.json
    to the bit."""
    docs = str(tmp_path / "docs")
    from_boxes = run_report(study_out, monkeypatch, "--publish", docs)
    assert sorted(os.listdir(docs)) == ["matches", "runs", "study.json", "study.png"]
    assert sorted(os.listdir(os.path.join(docs, "runs"))) == sorted(
        os.listdir(os.path.join(study_out, "runs")))
    kept = sorted(os.listdir(os.path.join(docs, report.MATCHES)))
    final = sorted(f"{r['run']}.json.gz" for arm in ("nobias", "batchnorm")
                   for r in report.arm_runs(report.settled(
                       study_trees.read_records(study_out)))[arm])
    assert kept == final and len(kept) == 10  # five seeds of each arm, no tuning run
    with gzip.open(os.path.join(docs, report.MATCHES, kept[0]), "rt") as f:
        assert set(json.load(f)) == {"batchnorm", "naive"}  # (b) and its shifts dropped
    assert run_report(docs, monkeypatch) == from_boxes


def test_a_study_published_while_it_runs_resumes_from_what_was_published(study_out, tmp_path,
                                                                          monkeypatch):
    """Published while (b) still tunes, a study keeps every (b) run's matches beside its
    records; copied into an empty OUT (studies/scripts/study_v4.sh on a new machine), they give the
    runner the same next run and the report the same study.json; (b) finished there, the
    report equals the one of the study that never moved, and only final runs' matches stay."""
    whole = run_report(study_out, monkeypatch)
    for name in os.listdir(os.path.join(study_out, "runs")):
        if name.startswith("batchnorm") and "-k0-w50-" not in name:
            os.remove(os.path.join(study_out, "runs", name))
    docs, moved = str(tmp_path / "docs"), str(tmp_path / "moved")
    partial = run_report(study_out, monkeypatch, "--publish", docs)
    tuning = sorted(n for n in os.listdir(os.path.join(docs, "runs")) if n.startswith("batch"))
    assert len(tuning) == 5 and partial["settings"]["batchnorm"]["done"] is False
    assert sorted(os.listdir(os.path.join(docs, report.MATCHES))) == sorted(
        [f"nobias-k0-w50-s{s}.json.gz" for s in range(1, 6)] +
        [n.replace(".json", ".json.gz") for n in tuning])
    for sub in ("runs", report.MATCHES):
        shutil.copytree(os.path.join(docs, sub), os.path.join(moved, sub))

    def next_run(out):
        return study_trees.plan("batchnorm", study_trees.val_of(study_trees.read_records(out),
                                                                "batchnorm"))
    assert next_run(moved) == next_run(study_out) == study_trees.Run(
        "batchnorm", -2, 50, 1, study_trees.PROTOCOL["lr_base"])
    assert run_report(moved, monkeypatch) == partial

    finished = str(tmp_path / "finished")  # the runs (b) still needed, trained on the new machine
    add_arm(finished, "batchnorm", "half")
    for name in set(os.listdir(os.path.join(finished, "runs"))) - set(tuning):
        run = name[:-len(".json")]
        shutil.copy(os.path.join(finished, "runs", name), os.path.join(moved, "runs"))
        os.makedirs(os.path.join(moved, "detections"), exist_ok=True)
        shutil.copy(os.path.join(finished, "detections", f"{run}.json.gz"),
                    os.path.join(moved, "detections"))
    assert run_report(moved, monkeypatch) == whole
    assert sorted(os.listdir(os.path.join(moved, report.MATCHES))) == sorted(
        f"{arm}-k0-w50-s{s}.json.gz" for arm in ("nobias", "batchnorm") for s in range(1, 6))


def test_flat_schedule_compares_two_thirds_of_the_way_with_the_end():
    def run(curve):
        return {"val_curve": curve}

    state = {"nobias": {"done": True, "final": [run([[20, 0.1], [40, 0.30], [60, 0.32]]),
                                                run([[20, 0.1], [35, 0.20], [60, 0.26]])]},
             "batchnorm": {"done": False, "next": "x", "runs": 3}}
    flat = report.flat_schedule(state)
    assert list(flat) == ["nobias"]  # an arm still in tuning has no final runs
    f = flat["nobias"]
    assert (f["from_epoch"], f["to_epoch"]) == (40, 60)
    assert f["val_ap50_from"] == pytest.approx(0.25)  # 0.30 at 40, and 0.20 at 35 (no 40)
    assert f["val_ap50_to"] == pytest.approx(0.29)
    assert f["change_points"] == pytest.approx(4.0)
    late = {"nobias": {"done": True, "final": [run([[50, 0.2], [60, 0.3]])]}}
    assert report.flat_schedule(late) == {}  # validated first after epoch 40


def test_recompare_recomputes_the_comparisons_and_nothing_else(study_out, monkeypatch):
    first = run_report(study_out, monkeypatch)
    path = os.path.join(study_out, "study.json")
    stale = dict(first, comparisons={"test": []})
    with open(path, "w") as f:
        json.dump(stale, f)
    picture = os.path.getmtime(os.path.join(study_out, "study.png"))
    again = run_report(study_out, monkeypatch, "--recompare")
    assert again == first
    assert os.path.getmtime(os.path.join(study_out, "study.png")) == picture
