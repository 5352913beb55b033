"""Every link between the README and docs/ leads somewhere: the file exists and, for a
`#fragment`, so does a heading with that anchor (as GitHub makes them). Any `docs/<page>.md`
named in the code, the deploy files or the docs exists too, so moving a page cannot leave a
reference behind."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, a
    repeated one numbered."""
    found: set[str] = set()
    text = _FENCE.sub("", page.read_text(encoding="utf-8"))
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", text, re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchor, n = slug, 0
        while anchor in found:
            n += 1
            anchor = f"{slug}-{n}"
        found.add(anchor)
    return found


def test_anchor_rule_matches_github() -> None:
    page = ROOT / "docs" / "performance.md"
    assert "the-uis-chart-request-metricsget-history-bulk-interval-issue-22" in anchors(page)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_resolve(page: Path) -> None:
    broken = []
    for target in _LINK.findall(_FENCE.sub("", page.read_text(encoding="utf-8"))):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, fragment = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        checked = bool(fragment) and dest.suffix == ".md"
        if not dest.exists() or (checked and fragment not in anchors(dest)):
            broken.append(target)
    assert not broken, f"{page.name} links to what is not there: {broken}"


def test_docs_named_anywhere_exist() -> None:
    sources = [*PAGES, *(ROOT / "deploy").rglob("*"), *(ROOT / "gateway").rglob("*.py"),
               *(ROOT / "backends").rglob("*.py"), *(ROOT / "auth").rglob("*.py"),
               *(ROOT / "tests").rglob("*.py")]
    missing = {
        f"{source.relative_to(ROOT)}: {name}"
        for source in sources if source.is_file() and source.suffix != ".json"
        for name in re.findall(r"\bdocs/([\w-]+\.md)", source.read_text(encoding="utf-8"))
        if not (ROOT / "docs" / name).is_file()
    }
    assert not missing, sorted(missing)
