"""The study tables in studies/results/README.md (the only place they are kept) say what the
committed study.json beside
their picture holds: every seed's test mAP, the mean, std and worst seed, and the lr."""
import glob
import itertools
import json
import os
import re

import pytest

pytestmark = [pytest.mark.docs]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESULTS = os.path.join(ROOT, "studies", "results")
ARM_OF_LABEL = {"(a)": "nobias", "(b)": "batchnorm", "(c)": "naive", "(d)": "batchnorm_reparam",
                "(e)": "nobias_noheadbias"}
PICTURE = re.compile(r"!\[[^\]]*\]\((?:docs/)?(study_v2[a-z0-9_]*)/study\.png\)")


def heading_sections(path: str) -> list:
    """The text of `path` cut at its level-2 and level-3 headings."""
    with open(os.path.join(ROOT, path)) as f:
        return re.split(r"\n(?=#{2,3} )", f.read())


def sections(path: str) -> list:
    """(study directory, text) of each heading's section of `path` that shows a study.png."""
    return [(picture.group(1), section) for section in heading_sections(path)
            for picture in [PICTURE.search(section)] if picture]


def seed_table(section: str) -> tuple:
    """The header and rows of the section's table of test mAP per seed."""
    lines = section.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| arm | lr | seed 1"))
    table = itertools.takewhile(lambda line: line.startswith("|"), lines[start:])
    header, _, *rows = [[c.strip() for c in line.strip("|").split("|")] for line in table]
    return header, rows


DOCUMENTED = [(path, study, section) for path in ("studies/results/README.md",)
              for study, section in sections(path)]


def test_every_study_v2_result_is_documented_with_its_table():
    shown = {(path, study) for path, study, _ in DOCUMENTED}
    for study in ("study_v2", "study_v2_hard", "study_v2_36ep"):
        assert ("studies/results/README.md", study) in shown, study
    with open(os.path.join(ROOT, "README.md")) as f:
        assert not PICTURE.search(f.read())  # each table once: the README links to results.md


@pytest.mark.parametrize("path, study, section", DOCUMENTED,
                         ids=[f"{p}:{s}" for p, s, _ in DOCUMENTED])
def test_a_documented_table_is_its_study_json(path, study, section):
    with open(os.path.join(RESULTS, study, "study.json")) as f:
        result = json.load(f)
    header, rows = seed_table(section)
    seeds = [int(h.split()[1]) for h in header if h.startswith("seed ")]
    assert seeds == result["protocol"]["seeds"]
    assert {ARM_OF_LABEL[row[0][:3]] for row in rows} == set(result["arms"])
    for row in rows:
        arm = ARM_OF_LABEL[row[0][:3]]
        measured, summary = result["arms"][arm]["seeds"], result["summary"][arm]
        figures = dict(zip(header, row))
        if arm != "naive":
            assert float(figures["lr"]) == result["protocol"]["lrs"][arm]
        for seed in seeds:
            assert figures[f"seed {seed}"] == f"{measured[str(seed)]['test_map']:.3f}", (arm, seed)
        mean = figures.get("mean ± std") or figures["mean"]
        expected = f"{summary['test_map_mean']:.3f}"
        if "±" in mean:
            expected += f" ± {summary['test_map_std']:.3f}"
        assert mean == expected, arm
        assert figures["min"] == f"{summary['test_map_min']:.3f}", arm



def tables_of(study: str) -> dict:
    """The report's markdown tables of docs/`study`/study.json, as table lines."""
    from ssd_nobias_studies import tables
    with open(os.path.join(RESULTS, study, "study.json")) as f:
        report = json.load(f)
    return {name: [line for line in getattr(tables, name)(report).splitlines()
                   if line.startswith("|")]
            for name in ("tuning", "arms", "comparisons", "summary")}


def section_linking(path: str, target: str) -> set:
    """The stripped lines of the smallest heading section of `path` that links to `target`."""
    section = next(s for s in heading_sections(path) if f"]({target})" in s)
    return {line.strip() for line in section.splitlines()}


REPORTED = sorted(os.path.relpath(os.path.dirname(p), RESULTS)
                  for p in glob.glob(os.path.join(RESULTS, "study_v[3-9]*", "**",
                                                  "study.json"), recursive=True))


def test_the_real_data_study_is_reported():
    assert "study_v3" in REPORTED


@pytest.mark.parametrize("study", REPORTED)
def test_a_study_section_shows_the_tables_of_its_study_json(study):
    """Study v3's report and later ones: the section of studies/results/README.md that links to a
    study.json holds its tuning, arms and comparisons tables as the report prints them."""
    tables = tables_of(study)
    results = section_linking("studies/results/README.md", f"{study}/study.json")
    for name in ("tuning", "arms", "comparisons"):
        missing = [line for line in tables[name] if line not in results]
        assert not missing, (name, missing)


def test_the_readme_summary_is_study_v3s():
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = {line.strip() for line in f}
    missing = [line for line in tables_of("study_v3")["summary"] if line not in readme]
    assert not missing, missing


KEPT_MATCHES = sorted({os.path.dirname(os.path.dirname(p)) for p in glob.glob(
    os.path.join(RESULTS, "study_v[3-9]*", "**", "matches", "*.json.gz"), recursive=True)})


@pytest.mark.parametrize("folder", KEPT_MATCHES,
                         ids=[os.path.relpath(f, ROOT) for f in KEPT_MATCHES])
def test_committed_matches_give_their_runs_figures(folder):
    """A study committed with per-image matches instead of boxes: they are there for every
    kept run (the final runs, every run of an arm still tuning) and variant, and give the AP50
    and AP[.5:.95] its record holds, exactly, so its comparisons can be rechecked."""
    from ssd_nobias_studies import runner as study, report
    from ssd_nobias.evaluation.ap_stats import coco_ap, voc07_ap50
    protocol = study.load_protocol(os.path.join(folder, "protocol.json"))
    records = study.read_records(folder)
    runs = report.kept_runs(records, report.settled(records, protocol))
    kept = report.Detections(folder)
    assert sorted(os.listdir(os.path.join(folder, report.MATCHES))) == sorted(
        {f"{row['run']}.json.gz" for rows in runs.values() for row in rows})
    for variant, rows in runs.items():
        for row in rows:
            for split in set(study.kept_splits(protocol["splits"])) & row["splits"].keys():
                figures = row["splits"][split]  # the INT8 pairs are scored on test alone
                _, matches = kept(row["run"], variant, split)
                where = (row["run"], variant, split)
                assert len(matches) == figures["images"], where
                assert voc07_ap50(matches) == figures["ap50"], where
                assert coco_ap(matches)["AP"] == figures["ap"], where


QUOTED_INTERVAL = re.compile(r"([+-]\d+\.\d+)(?: points)?(?: AP50| AP\[\.5:\.95\])? "
                             r"\[([+-]\d+\.\d+), ([+-]\d+\.\d+)\]")


def measured_comparisons(study: str) -> list:
    """docs/`study`/study.json's comparisons on test and its INT8 pair's."""
    with open(os.path.join(RESULTS, study, "study.json")) as f:
        comparisons = json.load(f)["comparisons"]
    return comparisons["test"] + ([comparisons["int8"]] if "int8" in comparisons else [])


@pytest.mark.parametrize("bullet, studies", [
    ("- **Real data (study v3", ["study_v3"]),
    ("- **Synthetic shapes", [os.path.relpath(os.path.dirname(p), RESULTS)
                              for p in glob.glob(os.path.join(RESULTS, "study_v4", "*",
                                                              "study.json"))])])
def test_the_readme_verdicts_quote_their_studys_intervals(bullet, studies):
    """The README's verdict prose: every 'difference [low, high]' a results bullet quotes is
    one of its study's test comparisons (or INT8 pair's), rounded as shown."""
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    start = readme.index(bullet)
    text = readme[start:readme.index("\n- **", start + 1)]
    quoted = QUOTED_INTERVAL.findall(" ".join(text.split()))
    measured = [m for study in studies for m in measured_comparisons(study)]
    assert quoted and studies
    for difference, low, high in quoted:
        places = len(difference.split(".")[1])
        assert (difference, low, high) in {
            tuple(f"{100 * m[key]:+.{places}f}" for key in ("difference", "low", "high"))
            for m in measured}, (difference, low, high)


def test_the_readme_results_open_with_the_headline_of_the_committed_studies():
    """README's Results begin with one table, per setting the bias-free recipe against the best
    stock model with the two-level interval and verdict, as tables.committed_headline prints
    it from the committed study.json files."""
    from ssd_nobias_studies.tables import committed_headline
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    results = readme[readme.index("## Results"):]
    first = results[results.index("\n|"):].strip().split("\n\n")[0]
    assert first == committed_headline(RESULTS)
