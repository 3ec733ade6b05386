"""The README and the manual under docs/: every relative link resolves, every page is
reachable from the README, and the README stays short."""

import re

import pytest
from helpers.paths import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def relative_links(page):
    for target in LINK.findall(page.read_text()):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL or an anchor on the same page
        yield target.split("#", 1)[0]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    broken = [t for t in relative_links(page) if not (page.parent / t).exists()]
    assert broken == []


def test_a_broken_link_is_found(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("[ok](page.md) [gone](missing.md) [web](https://example.org) [here](#top)")
    assert [t for t in relative_links(page) if not (page.parent / t).exists()] == ["missing.md"]


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(ROOT / t).resolve() for t in relative_links(ROOT / "README.md")}
    assert [p.name for p in PAGES[1:] if p.resolve() not in linked] == []


def test_the_readme_is_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 220


def test_the_stores_column_tables_are_the_rows_definitions():
    from pdarts_ray.core.rows import EPOCH_ROW, TRIAL_ROW
    from pdarts_ray.results.store import STORE_KEYS, Row, column_table

    page = (ROOT / "docs" / "results.md").read_text()
    assert column_table(TRIAL_ROW) in page
    assert column_table(Row(*STORE_KEYS, *EPOCH_ROW)) in page
