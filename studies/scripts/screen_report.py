"""Recipe v2's screen, reported: studies/ssd_nobias_studies/screen.py holds it and its usage."""
from ssd_nobias import cli
from ssd_nobias_studies.screen import main

if __name__ == "__main__":
    raise SystemExit(cli.run(main))
