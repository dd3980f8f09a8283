"""Study v3 on real pixels (NEON tree crowns), the runner; with --protocol, another dataset.
ssd_nobias/analysis/study.py holds it and its usage (`python bench/study_trees.py --help`)."""
from ssd_nobias import cli
from ssd_nobias.analysis.study import main

if __name__ == "__main__":
    raise SystemExit(cli.run(main))
