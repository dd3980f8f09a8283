"""Study v3's protocol (studies/scripts/study_trees.py): the order of runs it asks for and the
choices it
makes, on stand-in val figures (no training); and the runner and report end to end on a tiny
synthetic protocol."""
import glob
import gzip
import json
import os
import subprocess
import sys

import pytest

from ssd_nobias.errors import DataError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPTS = os.path.join(ROOT, "studies", "scripts")
RESULTS = os.path.join(ROOT, "studies", "results")

from ssd_nobias_studies import runner as tuned_study


@pytest.fixture(scope="module")
def study():
    return tuned_study


def drive(study, curve, warmup_gain=0.0, seed_noise=0.001):
    """Run plan() to the end with val AP50 = curve(k) (+ warmup_gain at the longer warmup, a
    small seed offset); the runs asked for, in order, and the final choice."""
    val, asked = {}, []
    while True:
        step = study.plan("nobias", val)
        if not isinstance(step, study.Run):
            return asked, step
        assert (step.k, step.warmup, step.seed) not in val
        asked.append(step)
        val[(step.k, step.warmup, step.seed)] = curve(step.k) + seed_noise * step.seed + (
            warmup_gain if step.warmup == study.PROTOCOL["warmups"][1] else 0.0)


def test_interior_optimum_is_refined_by_sqrt2_and_bracketed(study):
    asked, (k, warmup) = drive(study, lambda k: 0.5 - 0.01 * (k - 1) ** 2)
    tried = sorted({r.k for r in asked})
    assert tried == [-2, -1, 0, 1, 2]
    assert k == 1 and warmup == 50
    assert [r.seed for r in asked if (r.k, r.warmup) == (1, 50)] == [1, 2, 3, 4, 5]
    # the tuning seeds only, at every lr and at the other warmup
    assert {r.seed for r in asked if r.k != 1 or r.warmup != 50} == {1, 2}
    assert {r.warmup for r in asked} == {50, 200}


def test_optimum_past_the_grid_edge_extends_it_by_factor_two(study):
    asked, (k, _) = drive(study, lambda k: 0.5 - 0.01 * abs(k + 5))
    tried = sorted({r.k for r in asked})
    # -2 best of the first three, then -4, then -4 and -6 tie (the smaller lr wins, at the
    # edge): -8; -6 is best, its sqrt(2) neighbours -7 and -5 are tried and -5 wins
    assert tried == [-8, -7, -6, -5, -4, -2, 0, 2] and k == -5


def test_grid_stops_at_its_range_and_warmup_can_win(study):
    asked, (k, warmup) = drive(study, lambda k: 0.1 * k, warmup_gain=0.05)
    assert k == study.PROTOCOL["k_range"][1] and warmup == 200
    assert max(r.k for r in asked) == study.PROTOCOL["k_range"][1]


def test_learning_rates_are_the_sqrt2_grid(study):
    assert study.lr_of(0) == 0.025 and study.lr_of(2) == 0.05
    assert study.lr_of(-1) == pytest.approx(0.025 / 2 ** 0.5)
    run = study.Run("batchnorm_reparam", -1, 200, 3)
    assert run.key == "batchnorm_reparam-k-1-w200-s3"
    args = study.overrides(run, "/out", "/data")
    assert "train.warmup_iters=200" in args and "model.conv_weights=centered" in args


def test_a_protocol_file_needs_every_key_and_a_test_split(study, tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({k: v for k, v in study.PROTOCOL.items() if k != "warmups"}))
    with pytest.raises(DataError, match="p.json' lacks warmups"):
        study.load_protocol(str(path))
    path.write_text(json.dumps(dict(study.PROTOCOL, splits=["val", "holdout"])))
    with pytest.raises(DataError, match="splits must start with val and hold test"):
        study.load_protocol(str(path))
    path.write_text(json.dumps(dict(study.PROTOCOL, splits=["val"])))  # a screen
    assert study.load_protocol(str(path))["splits"] == ["val"]
    path.write_text(json.dumps(dict(study.PROTOCOL, arms={"nobias": "(a)"})))
    assert study.load_protocol(str(path)) == study.PROTOCOL  # OUT/protocol.json reads back


JOINT = dict(tuning="joint", warmups=[50, 200, 500, 1000, 2000], start_warmup=200,
             first_ks=[0], choice_metric="ap")


def drive_joint(study, surface, **changes):
    """Run the joint plan() to the end with val figure = surface(k, warmup) on every seed."""
    protocol = dict(study.PROTOCOL, **dict(JOINT, **changes))
    val, asked = {}, []
    while True:
        step = study.plan("nobias", val, protocol)
        if not isinstance(step, study.Run):
            return asked, step
        assert (step.k, step.warmup, step.seed) not in val
        asked.append(step)
        val[(step.k, step.warmup, step.seed)] = surface(step.k, step.warmup)


def test_joint_tuning_walks_to_an_optimum_bracketed_on_both_axes(study):
    ladder = JOINT["warmups"]
    asked, choice = drive_joint(study, lambda k, w: -(k + 2) ** 2 - (ladder.index(w) - 3) ** 2)
    assert choice == (-2, 1000)
    tried = {(r.k, r.warmup) for r in asked}
    # the choice's four neighbours were all tried: bracketed by sqrt(2) in lr, a rung in warmup
    assert {(-3, 1000), (-1, 1000), (-2, 500), (-2, 2000)} <= tried
    # the walk: (0, 200) -> (-1, 200) -> ... each step to the best of a centre's neighbours
    assert (0, 200) in tried and (0, 50) in tried and (1, 200) in tried
    assert [r.seed for r in asked if (r.k, r.warmup) == choice] == [1, 2, 3, 4, 5]
    assert {r.seed for r in asked if (r.k, r.warmup) != choice} == {1, 2}


def test_joint_tuning_stops_at_the_ladder_end_and_breaks_ties_low(study):
    asked, choice = drive_joint(study, lambda k, w: w, k_range=[-1, 1])
    assert choice == (0, 2000)  # the longest warmup wins; the lrs tie, the centre is kept
    assert max(r.warmup for r in asked) == 2000 and min(r.k for r in asked) == -1
    asked, choice = drive_joint(study, lambda k, w: 0.0)
    assert choice == (0, 200)  # a flat surface: the start is kept, its 4 neighbours tried
    assert len(asked) == 5 * 2 + 3
    asked, choice = drive_joint(study, lambda k, w: float((k, w) in {(-1, 200), (0, 50)}))
    assert choice == (-1, 200)  # (-1, 200) and (0, 50) tie as neighbours: the smaller lr


def test_a_joint_protocol_with_one_point_runs_its_seeds_there(study):
    """A candidate screened at fixed settings (k_range one k, a ladder of one warmup)."""
    asked, choice = drive_joint(study, lambda k, w: 0.5, warmups=[200], k_range=[0, 0])
    assert choice == (0, 200) and [(r.k, r.warmup, r.seed) for r in asked] == [
        (0, 200, 1), (0, 200, 2), (0, 200, 3), (0, 200, 4), (0, 200, 5)]


def test_a_joint_protocol_names_its_start_on_the_ladder_and_a_known_metric(study, tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps(dict(study.PROTOCOL, **JOINT)))
    assert study.load_protocol(str(path))["tuning"] == "joint"
    path.write_text(json.dumps(dict(study.PROTOCOL, **dict(JOINT, start_warmup=300))))
    with pytest.raises(DataError, match="start_warmup is 300"):
        study.load_protocol(str(path))
    path.write_text(json.dumps(dict(study.PROTOCOL, **dict(JOINT, choice_metric="f1"))))
    with pytest.raises(DataError, match="choice_metric must be one of ap50, ap, not 'f1'"):
        study.load_protocol(str(path))
    path.write_text(json.dumps(dict(study.PROTOCOL, **dict(JOINT, tuning="random"))))
    with pytest.raises(DataError, match="tuning must be one of sequential, joint"):
        study.load_protocol(str(path))


def test_a_run_record_names_its_commit(study):
    commit = study.checkout_commit()
    head = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    assert commit.split("-")[0] == (head or "unknown")


@pytest.mark.slow
@pytest.mark.subprocess
def test_the_runner_and_report_hold_a_synthetic_protocol_to_the_same_standard(study, tmp_path):
    """One arm, one lr, two warmups, one seed, one epoch each on 16 tiny images with a test
    split: every run trained, exported and scored on val and test with its per-image
    detections and INT8 pair, then the report's tables and bootstrap from those records."""
    protocol = dict(study.PROTOCOL, config="configs/demo_synthetic.yaml",
                    data={"synthetic": {"train": 16, "val": 2, "test": 3, "size": 96}},
                    epochs=1, val_interval=1, save_interval=1, first_ks=[0], k_range=[0, 0],
                    warmups=[1, 2], tune_seeds=[1], final_seeds=[1], splits=["val", "test"])
    (tmp_path / "p.json").write_text(json.dumps(protocol))
    out, data = tmp_path / "out", tmp_path / "data"
    done = subprocess.run([sys.executable, os.path.join(SCRIPTS, "study_trees.py"),
                           "--protocol", str(tmp_path / "p.json"), "--arms", "nobias",
                           "--out", str(out), "--work", str(tmp_path / "work"),
                           "--data", str(data)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "nobias: done, lr 0.025 warmup" in done.stdout
    assert os.path.isfile(data / "ImageSets" / "Main" / "test.txt")
    records = sorted(glob.glob(str(out / "runs" / "*.json")))
    assert [os.path.basename(r) for r in records] == ["nobias-k0-w1-s1.json",
                                                      "nobias-k0-w2-s1.json"]
    with open(records[0]) as f:
        record = json.load(f)
    assert set(record["splits"]) == {"val", "test"} and record["lr"] == 0.025
    assert record["commit"] == study.checkout_commit() and record["started"].endswith("Z")
    assert record["splits"]["test"]["images"] == 3 and "int8" in record
    with gzip.open(out / "detections" / "nobias-k0-w1-s1.json.gz", "rt") as f:
        kept = json.load(f)
    assert set(kept["nobias"]) == {"test"} and len(kept["nobias"]["test"]) == 3
    assert set(kept) == {"nobias", "nobias_float32_pair", "nobias_int8_pair"}

    runner = [sys.executable, os.path.join(SCRIPTS, "study_trees.py"), "--protocol",
              str(tmp_path / "p.json"), "--out", str(out), "--work", str(tmp_path / "work"),
              "--data", str(data), "--long"]
    long = subprocess.run(runner + ["--arms", "nobias", "batchnorm"], capture_output=True,
                          text=True)
    assert long.returncode == 0, long.stdout[-2000:] + long.stderr[-2000:]
    assert "batchnorm: not finished (batchnorm-k0-w1-s1 next), no long run yet" in long.stdout
    chosen = [line for line in done.stdout.splitlines() if line.startswith("nobias: done")][0]
    key = f"nobias-k0-w{chosen.split()[-1]}-s1"
    assert f"nobias: long run {key}, 2 epochs: val" in long.stdout
    with open(out / "long" / "runs" / f"{key}.json") as f:
        assert json.load(f)["epochs"] == 2
    again = subprocess.run(runner + ["--arms", "nobias"], capture_output=True, text=True)
    assert f"nobias: long run {key} (2 epochs) already done" in again.stdout

    report = subprocess.run([sys.executable, os.path.join(SCRIPTS, "study_trees_report.py"),
                             "--out", str(out), "--samples", "20", "--title", "tiny"],
                            capture_output=True, text=True)
    assert report.returncode == 0, report.stderr[-2000:]
    with open(out / "study.json") as f:
        study_json = json.load(f)
    assert study_json["protocol"]["splits"] == ["val", "test"]
    assert study_json["settings"]["nobias"]["done"]
    assert study_json["arms"]["nobias"]["test"]["ap50"]["n"] == 1
    assert "int8" in study_json["comparisons"]  # the INT8 pair's paired bootstrap
    assert "| arm | lr | warmup | test AP50 | test AP[.5:.95] |\n" in report.stdout
    assert study_json["long_schedule"]["nobias"]["run"] == key
    assert (study_json["long_schedule"]["nobias"]["epochs"],
            study_json["long_schedule"]["nobias"]["protocol_epochs"]) == (2, 1)
    assert f"nobias: {key} at 2 epochs: val AP50" in report.stdout


@pytest.mark.parametrize("name, epochs, variant", [("shapes_12ep", 12, "shapes"),
                                                   ("shapes_36ep", 36, "shapes"),
                                                   ("hard_12ep", 12, "hard")])
def test_study_v4s_committed_protocols_load_as_their_document_says(study, name, epochs, variant):
    protocol = study.load_protocol(os.path.join(RESULTS, "study_v4", f"{name}.json"))
    data = protocol["data"]["synthetic"]
    assert (protocol["epochs"], data["variant"]) == (epochs, variant)
    assert (data["train"], data["val"], data["test"]) == (1000, 100, 300)
    assert protocol["splits"] == ["val", "test"]
    assert protocol["config"] == "configs/demo_synthetic.yaml"
    for key in ("lr_base", "first_ks", "k_range", "warmups", "tune_seeds", "final_seeds"):
        assert protocol[key] == study.PROTOCOL[key]  # study v3's tuning rules


def test_a_protocols_classes_are_its_datasets(study):
    assert study.protocol_classes(study.PROTOCOL) == ("tree",)  # study v3: the NEON tiles
    hard = study.load_protocol(os.path.join(RESULTS, "study_v4", "hard_12ep.json"))
    assert study.protocol_classes(hard) == ("circle", "square", "triangle", "star", "hexagon",
                                            "diamond", "cross", "ring")
    assert study.synthetic_args(study.PROTOCOL) is None
    assert study.synthetic_args(hard)["variant"] == "hard"


def test_a_synthetic_protocols_data_is_written_once(study, tmp_path, monkeypatch):
    protocol = {"data": {"synthetic": {"train": 4, "val": 2, "test": 2, "size": 64, "seed": 0,
                                       "variant": "hard"}}}
    study.prepare_data(protocol, str(tmp_path))
    with open(tmp_path / "classes.txt") as f:
        assert f.read().split() == list(study.protocol_classes(protocol))

    def written_again(*args, **kwargs):
        raise AssertionError("the dataset was there and was written again")
    monkeypatch.setattr(study, "make_synthetic", written_again)
    study.prepare_data(protocol, str(tmp_path))


def test_the_missing_factorial_cell_is_the_norm_with_plain_weights(study):
    """(j) separates the norm from the weights: (a)'s NoBiasBatchNorm with (b)'s plain
    weights, and like (a) bias-free; run only when named."""
    from ssd_nobias.config import load_config
    from ssd_nobias.model.ssd import build_model, recipe_summary

    cfg = load_config(os.path.join(study.ROOT, "configs", "demo_synthetic.yaml"),
                      study.TRAINED["nobias_plain"])
    summary = recipe_summary(build_model(cfg, ["a"]))
    for kind in ("full", "depthwise", "pointwise", "extras"):
        assert summary[kind] == "NoBiasBatchNorm, plain weights, fused ReLU", kind
    assert "nobias_plain" in study.CANDIDATES and study.ARMS["nobias_plain"].startswith("(j)")


def test_a_fold_protocol_builds_its_fold_of_the_tree_crowns(study, tmp_path, monkeypatch):
    """Study v5's tree settings name a fold ({"neon_trees": {"folds": 3, "fold": k}}); study
    v3's data string keeps its fixed bands."""
    made = []
    monkeypatch.setattr(study, "fetch_wheel", lambda cache: "deepforest.whl")
    monkeypatch.setattr(study, "make_neon_trees",
                        lambda out, wheel, **kw: made.append((out, wheel, kw)))
    study.prepare_data({"data": {"neon_trees": {"folds": 3, "fold": 1}}}, str(tmp_path / "f1"))
    study.prepare_data({"data": study.PROTOCOL["data"]}, str(tmp_path / "v3"))
    assert made == [(str(tmp_path / "f1"), "deepforest.whl", {"folds": 3, "fold": 1}),
                    (str(tmp_path / "v3"), "deepforest.whl", {})]


@pytest.mark.parametrize("name, variant, epochs", [("shapes_36ep", "shapes", 36),
                                                   ("hard_36ep", "hard", 36),
                                                   ("trees_fold0", None, 60)])
def test_study_v5s_protocols_load_as_their_document_says(study, name, variant, epochs):
    """studies/results/study_v5/protocol.md, committed before the first run: joint tuning
    from (k 0, warmup 200) over the ladder, three tuning seeds, five final seeds, a new
    generator seed for the shapes, fold 0 of three for the trees."""
    protocol = study.load_protocol(os.path.join(RESULTS, "study_v5", f"{name}.json"))
    assert (protocol["tuning"], protocol["choice_metric"]) == ("joint", "ap")
    assert (protocol["first_ks"], protocol["start_warmup"]) == ([0], 200)
    assert protocol["warmups"] == [50, 200, 500, 1000, 1500]
    assert (protocol["tune_seeds"], protocol["final_seeds"]) == ([1, 2, 3], [1, 2, 3, 4, 5])
    assert protocol["epochs"] == epochs
    if variant is None:
        assert study.neon_trees_args(protocol) == {"folds": 3, "fold": 0}
        assert protocol["splits"] == ["val", "test", "test_othersite"]
    else:
        data = study.synthetic_args(protocol)
        assert (data["variant"], data["seed"], data["test"]) == (variant, 5, 300)
