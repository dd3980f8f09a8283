"""Study v3's and v4's statistics, tables and verdicts: ssd_nobias/analysis/study_report.py holds
them and the usage (`python bench/study_trees_report.py --help`)."""
from ssd_nobias import cli
from ssd_nobias.analysis.study_report import main

if __name__ == "__main__":
    raise SystemExit(cli.run(main))
