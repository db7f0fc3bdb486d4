"""The README stays a ten-minute read that links every page of docs/; the links resolve; every stack
setting stacks/config.py reads is in docs/stacks.md. Pure text: no server."""
import os
import re

import pytest

from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.unit

DOCS = os.path.join(REPO_ROOT, "docs")


def _read(*path: str) -> str:
    with open(os.path.join(REPO_ROOT, *path)) as f:
        return f.read()


def _pages() -> list[str]:
    return ["README.md"] + [os.path.join("docs", n) for n in sorted(os.listdir(DOCS)) if n.endswith(".md")]


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_the_readme_is_short_and_links_every_page_of_docs():
    readme = _read("README.md")
    assert len(readme.splitlines()) <= 250
    linked = set(re.findall(r"\]\(docs/([^)#\s]+)", readme))
    assert sorted(set(os.listdir(DOCS)) - linked) == []


def test_every_relative_link_resolves_to_a_file_and_heading():
    broken = []
    for page in _pages():
        for target in re.findall(r"\]\(([^)\s]+)\)", _read(page)):
            if re.match(r"^[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            resolved = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
            if not os.path.exists(os.path.join(REPO_ROOT, resolved)):
                broken.append(f"{page}: {target}")
            elif anchor and resolved.endswith(".md"):
                headings = re.findall(r"^#+ (.*)$", _read(resolved), re.M)
                if anchor not in {_anchor(h) for h in headings}:
                    broken.append(f"{page}: {target} (no such heading)")
    assert broken == []


def test_every_stack_setting_is_in_docs_stacks_md():
    # Every read of a setting in stacks/config.py is r.<reader>("key", ...); r.has("key") also checks for
    # refused keys, which need no documentation of their own.
    keys = set(re.findall(r"\br\.(?!has\b)\w+\(\s*\"([a-zA-Z]\w*)\"", _read("stacks", "config.py")))
    assert len(keys) > 50, "the reads of stacks/config.py were not found: update this test's pattern"
    documented = set(re.findall(r"`([a-zA-Z]\w*)`", _read("docs", "stacks.md")))
    assert sorted(keys - documented) == []
