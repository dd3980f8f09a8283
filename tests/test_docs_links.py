"""Every relative link in README.md, docs/ and studies/ leads somewhere: the file is in the
repository
and, for a '#heading' anchor, the target page has that heading (GitHub's anchor rule)."""
import glob
import os
import re

import pytest

pytestmark = [pytest.mark.docs]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINK = re.compile(r"\]\(([^)\s]+)\)")
PAGES = ["README.md"] + sorted(os.path.relpath(p, ROOT) for folder in ("docs", "studies")
                               for p in glob.glob(os.path.join(ROOT, folder, "**", "*.md"),
                                                  recursive=True))


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: str) -> set:
    with open(path) as f:
        return {anchor(m[1]) for m in re.finditer(r"^#+ (.+)$", f.read(), re.M)}


def links(page: str) -> list:
    """The relative link targets of a page, code blocks left out."""
    with open(os.path.join(ROOT, page)) as f:
        text = re.sub(r"```.*?```", "", f.read(), flags=re.S)
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]


def test_anchor_follows_githubs_rule():
    assert anchor("Study v4: the synthetic claims to study v3's standard, under way") == \
        "study-v4-the-synthetic-claims-to-study-v3s-standard-under-way"


@pytest.mark.parametrize("page", PAGES)
def test_every_relative_link_leads_somewhere(page):
    broken = []
    for target in links(page):
        file, _, heading = target.partition("#")
        dest = os.path.normpath(os.path.join(ROOT, os.path.dirname(page), file)) if file \
            else os.path.join(ROOT, page)
        if not os.path.exists(dest) or (heading and dest.endswith(".md")
                                        and heading not in anchors(dest)):
            broken.append(target)
    assert not broken, broken


def test_the_readme_links_its_docs():
    assert len(links("README.md")) >= 10
