"""Recipe v2's screen report (studies/ssd_nobias_studies/screen.py): the points tried, where
the joint search stands, and the declared rule applied to the choice against the baseline."""
import json
import os

from ssd_nobias_studies import runner, screen

PROTOCOL = dict(runner.PROTOCOL, tuning="joint", warmups=[50, 200, 500], start_warmup=200,
                first_ks=[0], k_range=[-1, 1], tune_seeds=[1, 2], final_seeds=[1, 2],
                choice_metric="ap", splits=["val"])


def write_runs(out, surface):
    """Run records of every point the joint search asks for, val figures from surface(k, w)."""
    os.makedirs(os.path.join(out, "runs"), exist_ok=True)
    with open(os.path.join(out, "protocol.json"), "w") as f:
        json.dump(PROTOCOL, f)
    while True:
        records = runner.read_records(out)
        step = runner.plan("nobias", runner.val_of(records, "nobias", "ap"), PROTOCOL)
        if not isinstance(step, runner.Run):
            return step
        ap, ap50 = surface(step.k, step.warmup)
        record = {"run": step.key, "arm": "nobias", "k": step.k, "lr": step.lr,
                  "warmup": step.warmup, "seed": step.seed,
                  "splits": {"val": {"ap": ap + 0.001 * step.seed, "ap50": ap50}}}
        with open(os.path.join(out, "runs", f"{step.key}.json"), "w") as f:
            json.dump(record, f)


def test_a_longer_warmup_that_gains_a_point_passes_the_rule(tmp_path):
    out = str(tmp_path / "out")
    choice = write_runs(out, lambda k, w: (0.60 - 0.01 * abs(k) + 0.01 * (w == 500), 0.90))
    assert choice == (0, 500)
    result = screen.report(out)
    assert result["done"] and result["choice"] == {"k": 0, "lr": 0.025, "warmup": 500}
    assert result["bracketed"] == {"lr": True, "warmup": False}  # 500 is the ladder's end
    assert abs(result["rule"]["ap_gain"] - 0.01) < 1e-12 and result["rule"]["passes"]
    assert [(p["k"], p["warmup"]) for p in result["points"]] == [
        (-1, 200), (-1, 500), (0, 50), (0, 200), (0, 500), (1, 200), (1, 500)]
    text = screen.markdown(result)
    assert "| 0.025 | 500 | 61.15 | 90.00 | 2 |" in text
    assert text.endswith("AP[.5:.95] +1.00 points, AP50 +0.00: passes")


def test_a_candidate_arm_is_judged_against_the_baselines_runs(tmp_path):
    out = str(tmp_path / "out")
    write_runs(out, lambda k, w: (0.60, 0.90))  # (a): every point alike, the start kept
    for name in os.listdir(os.path.join(out, "runs")):
        with open(os.path.join(out, "runs", name)) as f:
            record = json.load(f)
        if (record["k"], record["warmup"]) != (0, 200):
            continue
        record.update(arm="nobias_ema", run=record["run"].replace("nobias", "nobias_ema"))
        record["splits"]["val"]["ap"] += 0.007
        with open(os.path.join(out, "runs", record["run"] + ".json"), "w") as f:
            json.dump(record, f)
    with open(os.path.join(out, "protocol.json"), "w") as f:  # the candidate's fixed point
        json.dump(dict(PROTOCOL, warmups=[200], k_range=[0, 0]), f)
    result = screen.report(out, "nobias_ema")
    assert result["done"] and [(p["k"], p["warmup"]) for p in result["points"]] == [(0, 200)]
    assert abs(result["rule"]["ap_gain"] - 0.007) < 1e-12 and result["rule"]["passes"]


def test_a_gain_bought_with_ap50_or_too_small_does_not_pass():
    base = {"ap": 0.60, "ap50": 0.90}
    assert not screen.rule({"ap": 0.604, "ap50": 0.90}, base)["passes"]
    assert not screen.rule({"ap": 0.62, "ap50": 0.894}, base)["passes"]
    assert screen.rule({"ap": 0.606, "ap50": 0.896}, base)["passes"]


def test_an_unfinished_search_names_its_next_run_and_publishes(tmp_path):
    out = tmp_path / "out"
    write_runs(str(out), lambda k, w: (0.6, 0.9))
    os.remove(out / "runs" / "nobias-k0-w500-s2.json")
    result = screen.report(str(out))
    assert not result["done"] and result["next"] == "nobias-k0-w500-s2"
    assert screen.markdown(result).endswith("searching: next run nobias-k0-w500-s2")
    assert screen.main(["--out", str(out), "--publish", str(tmp_path / "docs")]) == 0
    with open(tmp_path / "docs" / "screen.json") as f:
        assert list(json.load(f)) == ["nobias"]  # one entry per arm the records hold
    assert sorted(os.listdir(tmp_path / "docs")) == ["protocol.json", "runs", "screen.json"]
    assert len(os.listdir(tmp_path / "docs" / "runs")) == len(os.listdir(out / "runs"))
