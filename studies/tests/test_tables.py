"""The study report's markdown tables: what the docs paste and the docs test compares."""
from ssd_nobias_studies import tables


def spread(mean, std, low):
    return {"mean": mean, "std": std, "min": low, "max": mean, "n": 5}


def test_tuning_table_names_the_second_warmup_and_marks_lrs_not_run():
    report = {"protocol": {"warmups": [50, 200]},
              "tuning": {"nobias": {"warmup": {"0.025@50": [0.41234, 0.3],
                                               "0.025@200": [0.5, 0.6], "0.05@50": [0.2]}},
                         "batchnorm": {"warmup": {"0.0125@50": [0.1, 0.2]}}}}
    assert tables.tuning(report).splitlines() == [
        "| arm | lr 0.0125 | 0.025 | 0.05 |",
        "| --- | --- | --- | --- |",
        "| (a) NoBiasBatchNorm, the recipe | - | 0.412 / 0.300; warmup 200: 0.500 / 0.600 | "
        "0.200 |",
        "| (b) stock BatchNorm | 0.100 / 0.200 | - | - |"]


def test_arms_and_comparisons_in_points_with_exported_arms_at_their_parents_settings():
    figures = {"ap50": spread(0.4951, 0.0391, 0.438), "ap": spread(0.149, 0.018, 0.127)}
    report = {"protocol": {"splits": ["val", "test"], "final_seeds": [1, 2, 3, 4, 5]},
              "settings": {"batchnorm": {"lr": 0.025, "warmup": 200}},
              "arms": {"batchnorm": {"test": figures}, "naive": {"test": figures}},
              "comparisons": {
                  "best_stock": {"ap50": "batchnorm", "ap": "batchnorm"}, "stock_pending": [],
                  "test": [{"arm": "naive", "other": "batchnorm", "metric": m,
                            "difference": -0.25, "low": -0.3, "high": -0.2,
                            "verdict": "inferior"} for m in ("ap50", "ap")]}}
    assert tables.arms(report).splitlines()[2:] == [
        "| (b) stock BatchNorm | 0.025 | 200 | 49.5 +- 3.9 (43.8) | 14.9 +- 1.8 (12.7) |",
        "| (c) (b) exported with its shifts dropped | 0.025 | 200 | 49.5 +- 3.9 (43.8) | "
        "14.9 +- 1.8 (12.7) |"]
    assert tables.summary(report).splitlines()[0] == (
        "| arm (5 seeds, mean +- std) | test AP50 | test AP[.5:.95] |")
    assert tables.comparisons(report).splitlines()[2:] == [
        "| (c) - (b) | -25.00 [-30.00, -20.00] inferior | -25.00 [-30.00, -20.00] inferior |"]


def test_a_study_with_no_finished_arm_prints_only_its_tuning_table():
    report = {"protocol": {"warmups": [50, 200], "splits": ["val", "test"],
                           "final_seeds": [1, 2, 3, 4, 5]},
              "tuning": {"nobias": {"warmup": {"0.025@50": [0.8]}}}, "settings": {},
              "arms": {}, "comparisons": {"test": [], "best_stock": {}, "stock_pending": []}}
    assert tables.markdown(report) == "\n".join([
        "| arm | lr 0.025 |", "| --- | --- |", "| (a) NoBiasBatchNorm, the recipe | 0.800 |"])
    assert tables.tuning(dict(report, tuning={})) == ""
