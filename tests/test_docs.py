"""The README and the documentation site (mkdocs.yml, docs/) stay small, linked and true to the code.

- the diagnostics catalogue page is the one the check registry generates;
- the README stays a front page (<= 12 KB), the rest lives in docs/;
- every relative link in the README and in docs/ points to a file that exists;
- every page under docs/ is in mkdocs.yml's nav (and every nav entry exists);
- ``mkdocs build --strict`` passes (skipped with the reason when mkdocs or its theme is not installed).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
CATALOGUE = DOCS / "diagnostics" / "catalogue.md"
README_LIMIT = 12 * 1024

REGENERATE = "python -m runner.diagnostics.catalogue --out docs/diagnostics/catalogue.md"

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
_INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
# [text](target) and ![alt](target), with an optional "title"; link text may itself hold code spans.
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_EXTERNAL = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*:|//)")  # http:, https:, mailto:, ...


def doc_pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def relative_links(path: Path) -> list[str]:
    """The relative link targets of a Markdown file, outside code blocks and code spans, without #anchors."""
    text = _INLINE_CODE.sub("", _FENCE.sub("", path.read_text(encoding="utf-8")))
    targets = []
    for target in _LINK.findall(text):
        if _EXTERNAL.match(target) or target.startswith("#"):
            continue
        target = target.split("#", 1)[0].split("?", 1)[0]
        if target:
            targets.append(target)
    return targets


def nav_pages(node) -> list[str]:
    """Every page path named in a mkdocs nav (nested lists and {title: page} mappings)."""
    if isinstance(node, str):
        return [] if _EXTERNAL.match(node) else [node]
    if isinstance(node, list):
        return [page for item in node for page in nav_pages(item)]
    if isinstance(node, dict):
        return [page for value in node.values() for page in nav_pages(value)]
    return []


def mkdocs_config() -> dict:
    return yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))


def test_catalogue_is_generated_from_the_check_registry():
    from runner.diagnostics import catalogue

    expected = catalogue.markdown() + "\n"
    committed = CATALOGUE.read_text(encoding="utf-8") if CATALOGUE.exists() else ""
    assert committed == expected, (
        f"{CATALOGUE.relative_to(ROOT)} does not match the check registry; regenerate it with:\n    {REGENERATE}"
    )


def test_readme_is_at_most_12_kb():
    size = README.stat().st_size
    assert size <= README_LIMIT, (
        f"README.md is {size} bytes, over {README_LIMIT}: move the detail to a page under docs/ and link it"
    )


@pytest.mark.parametrize("page", [README, *doc_pages()], ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_to_existing_files(page):
    broken = [target for target in relative_links(page) if not (page.parent / target).exists()]
    assert not broken, f"{page.relative_to(ROOT)} links to files that do not exist: {broken}"


def test_the_link_finder_sees_links_and_skips_code():
    sample = DOCS.parent / "README.md"
    links = relative_links(sample)
    assert any(target.startswith("docs/") for target in links), "no docs/ link found in README.md"
    # the finder itself: links in code are not links, anchors and URLs are not files
    probe = (
        "[a](x.md) ![b](img/y.png) [`c`](z.md#part) [d](https://example.org) [e](#here)\n"
        "`[f](not-a-link.md)`\n```\n[g](neither.md)\n```\n"
    )
    text = _INLINE_CODE.sub("", _FENCE.sub("", probe))
    found = [t.split("#", 1)[0] for t in _LINK.findall(text) if not _EXTERNAL.match(t) and not t.startswith("#")]
    assert found == ["x.md", "img/y.png", "z.md"]


def test_every_docs_page_is_in_the_nav():
    config = mkdocs_config()
    assert config.get("docs_dir", "docs") == "docs"
    nav = nav_pages(config.get("nav", []))
    pages = {str(page.relative_to(DOCS)).replace(os.sep, "/") for page in doc_pages()}
    missing_from_nav = sorted(pages - set(nav))
    assert not missing_from_nav, f"pages under docs/ that mkdocs.yml's nav does not list: {missing_from_nav}"
    missing_files = sorted(set(nav) - pages)
    assert not missing_files, f"mkdocs.yml's nav names pages that do not exist under docs/: {missing_files}"
    duplicates = sorted({page for page in nav if nav.count(page) > 1})
    assert not duplicates, f"pages listed twice in mkdocs.yml's nav: {duplicates}"


def test_mkdocs_build_strict(tmp_path):
    missing = [name for name in ("mkdocs", "material") if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed (pip install -e '.[docs]')")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    assert (tmp_path / "site" / "index.html").exists()
