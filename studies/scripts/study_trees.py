"""Study v3 on real pixels (NEON tree crowns), the runner; with --protocol, another dataset.
studies/ssd_nobias_studies/runner.py holds it and its usage
(`python studies/scripts/study_trees.py --help`)."""
from ssd_nobias import cli
from ssd_nobias_studies.runner import main

if __name__ == "__main__":
    raise SystemExit(cli.run(main))
