"""The study tables in docs/results.md (the only place they are kept) say what the committed study.json beside
their picture holds: every seed's test mAP, the mean, std and worst seed, and the lr."""
import itertools
import json
import os
import re

import pytest

pytestmark = [pytest.mark.docs]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARM_OF_LABEL = {"(a)": "nobias", "(b)": "batchnorm", "(c)": "naive", "(d)": "batchnorm_reparam",
                "(e)": "nobias_noheadbias"}
PICTURE = re.compile(r"!\[[^\]]*\]\((?:docs/)?(study_v2[a-z0-9_]*)/study\.png\)")


def sections(path: str) -> list:
    """(study directory, text) of each heading's section of `path` that shows a study.png."""
    with open(os.path.join(ROOT, path)) as f:
        text = f.read()
    found = []
    for section in re.split(r"\n(?=#{2,3} )", text):
        picture = PICTURE.search(section)
        if picture:
            found.append((picture.group(1), section))
    return found


def seed_table(section: str) -> tuple:
    """The header and rows of the section's table of test mAP per seed."""
    lines = section.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| arm | lr | seed 1"))
    table = itertools.takewhile(lambda line: line.startswith("|"), lines[start:])
    header, _, *rows = [[c.strip() for c in line.strip("|").split("|")] for line in table]
    return header, rows


DOCUMENTED = [(path, study, section) for path in ("docs/results.md",)
              for study, section in sections(path)]


def test_every_study_v2_result_is_documented_with_its_table():
    shown = {(path, study) for path, study, _ in DOCUMENTED}
    for study in ("study_v2", "study_v2_hard", "study_v2_36ep"):
        assert ("docs/results.md", study) in shown, study
    with open(os.path.join(ROOT, "README.md")) as f:
        assert not PICTURE.search(f.read())  # each table once: the README links to results.md


@pytest.mark.parametrize("path, study, section", DOCUMENTED,
                         ids=[f"{p}:{s}" for p, s, _ in DOCUMENTED])
def test_a_documented_table_is_its_study_json(path, study, section):
    with open(os.path.join(ROOT, "docs", study, "study.json")) as f:
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


def study_v3_tables() -> dict:
    from ssd_nobias.analysis import study_v3_tables as tables
    with open(os.path.join(ROOT, "docs", "study_v3", "study.json")) as f:
        report = json.load(f)
    return {name: [line for line in getattr(tables, name)(report).splitlines()
                   if line.startswith("|")]
            for name in ("tuning", "arms", "comparisons", "summary")}


def lines_of(path: str, heading: str = "") -> set:
    """The stripped lines of `path`, or of its level-2 section whose heading starts so."""
    with open(os.path.join(ROOT, path)) as f:
        text = f.read()
    if heading:
        text = next(s for s in re.split(r"\n(?=## )", text) if s.startswith(heading))
    return {line.strip() for line in text.splitlines()}


def test_study_v3_tables_are_the_reports_of_its_study_json():
    tables = study_v3_tables()
    results = lines_of("docs/results.md", "## Study v3")
    for name in ("tuning", "arms", "comparisons"):
        missing = [line for line in tables[name] if line not in results]
        assert not missing, (name, missing)
    readme = lines_of("README.md")
    missing = [line for line in tables["summary"] if line not in readme]
    assert not missing, ("README", missing)
