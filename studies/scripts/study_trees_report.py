"""Study v3's and v4's statistics, tables and verdicts: studies/ssd_nobias_studies/report.py holds
them and the usage (`python studies/scripts/study_trees_report.py --help`)."""
from ssd_nobias import cli
from ssd_nobias_studies.report import main

if __name__ == "__main__":
    raise SystemExit(cli.run(main))
