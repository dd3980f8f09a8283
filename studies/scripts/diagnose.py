"""AP by IoU threshold, the recipe against the best stock arm: studies/ssd_nobias_studies/
diagnosis.py holds it and its usage."""
from ssd_nobias import cli
from ssd_nobias_studies.diagnosis import main

if __name__ == "__main__":
    raise SystemExit(cli.run(main))
