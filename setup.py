"""pyproject.toml holds the project; this file only speaks first on a Python that cannot run it.

pip builds a project's metadata before its dependencies, so this check comes before pip tries
to build numpy 1.23 from source on Python 3.12+ (which fails on `distutils`, far from the cause).
"""
import sys

if not (3, 10) <= sys.version_info[:2] <= (3, 11):
    sys.exit(f"ssd_nobias needs Python 3.10 or 3.11 (MXNet 1.9 needs numpy < 1.24, which has no "
             f"wheels for later Pythons); this is Python {sys.version.split()[0]}. Install with "
             f"python3.11 -m venv .venv && .venv/bin/pip install -U pip && .venv/bin/pip "
             f"install .")

from setuptools import setup  # noqa: E402  (after the check: it needs no setuptools)

setup()
