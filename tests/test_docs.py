"""The README and docs/*.md: runnable examples run as written, links point at what exists.

A fenced block opened with ```` ```bash runnable ```` is run as one bash script (``bash -e``: it stops at the first command that fails)
from a scratch folder that links the repository's ``tinyllm/`` and ``plugins/``, with the venv's
``tinyllm`` first on PATH, a fresh ``$TINYLLM_HOME`` and stdin closed; it must exit 0. Only quick,
offline blocks carry the marker (docs/README.md says which).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 300
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*(.*)$")
RUN_TIMEOUT = 600   # seconds: a hung block fails instead of stalling the suite (not a speed bound)


@dataclass
class Block:
    page: Path
    line: int          # 1-based line of the opening fence
    end: int           # 1-based line of the closing fence
    info: str          # the fence's info string, e.g. "bash runnable"
    text: str

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def fenced_blocks(page: Path) -> list[Block]:
    """Every fenced code block of a Markdown page, in order (fences inside list items too)."""
    blocks, fence, start, info, body = [], None, 0, "", []
    for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        m = FENCE.match(line)
        if fence is None:
            if m:
                fence, start, info, body = m.group(2), n, m.group(3).strip(), []
        elif m and m.group(2).startswith(fence) and not m.group(3).strip():
            blocks.append(Block(page, start, n, info, "\n".join(body) + "\n"))
            fence = None
        else:
            body.append(line)
    assert fence is None, f"{page}:{start}: code block never closed"
    return blocks


def runnable_blocks() -> list[Block]:
    return [b for page in PAGES for b in fenced_blocks(page) if b.info.split() == ["bash", "runnable"]]


def prose(page: Path, inline_code: bool = False) -> list[str]:
    """The page's lines outside code blocks, without inline code unless ``inline_code`` (links in
    code are examples, not links; headings keep their inline code for their anchors)."""
    in_code = {n for b in fenced_blocks(page) for n in range(b.line, b.end + 1)}
    lines = page.read_text(encoding="utf-8").splitlines()
    return [line if inline_code else re.sub(r"(`+).*?\1", "", line)
            for n, line in enumerate(lines, 1) if n not in in_code]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of a page's headings (a repeated heading gets -1, -2, ... as on GitHub)."""
    out: set[str] = set()
    repeats: dict[str, int] = {}
    for line in prose(page, inline_code=True):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = slug(m.group(1))
            k = repeats.get(base, 0)
            out.add(f"{base}-{k}" if k else base)
            repeats[base] = k + 1
    return out


# ---- the runnable examples --------------------------------------------------------------------

BLOCKS = runnable_blocks()


def test_pages_mark_runnable_examples():
    """The marker is in use where the quick commands are (a renamed marker would test nothing)."""
    by_page = {b.page.name for b in BLOCKS}
    assert len(BLOCKS) >= 10, [b.id for b in BLOCKS]
    assert "README.md" in by_page


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_runnable_block(block: Block, tmp_path: Path, tinyllm_home: Path):
    bindir = Path(sys.executable).parent
    if not (bindir / "tinyllm").exists():
        pytest.skip(f"no `tinyllm` script beside {sys.executable} (install with `make install`)")
    work = tmp_path / "work"
    work.mkdir()
    for name in ("tinyllm", "plugins"):   # the examples use repository-relative data paths
        (work / name).symlink_to(ROOT / name, target_is_directory=True)
    env = {**os.environ, "TINYLLM_HOME": str(tinyllm_home), "HF_HUB_OFFLINE": "1",
           "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    bash = shutil.which("bash")
    assert bash, "bash is needed to run the examples"
    r = subprocess.run([bash, "-e", "-c", block.text], cwd=work, env=env,
                       stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=RUN_TIMEOUT)
    assert r.returncode == 0, (f"{block.id} exited {r.returncode}\n--- block\n{block.text}"
                               f"--- stdout\n{r.stdout[-3000:]}\n--- stderr\n{r.stderr[-3000:]}")
    assert r.stdout.strip(), f"{block.id} printed nothing on stdout"


# ---- the pages themselves ---------------------------------------------------------------------

def test_readme_is_short_and_has_no_section_markers():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines (at most {README_MAX_LINES})"
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        assert "<!-- section" not in text and "<!-- /section" not in text, page


def test_docs_index_lists_every_page():
    index = (ROOT / "docs" / "README.md").read_text(encoding="utf-8")
    for page in PAGES:
        if page.parent.name == "docs" and page.name != "README.md":
            assert f"]({page.name})" in index, f"docs/README.md does not link {page.name}"


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_links_point_at_what_exists(page: Path):
    bad = []
    for target in LINK.findall("\n".join(prose(page))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):   # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            bad.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{target}: no heading with anchor #{anchor} in {dest.name}")
    assert not bad, f"{page.relative_to(ROOT)}: " + "; ".join(bad)


def test_slug_matches_github():
    assert slug("Train a GPT from scratch: `train`") == "train-a-gpt-from-scratch-train"
    assert slug("GPT-2: import OpenAI's weights, export to Hugging Face") == \
        "gpt-2-import-openais-weights-export-to-hugging-face"
    assert slug("Events and `metrics.jsonl`") == "events-and-metricsjsonl"
    assert slug("Route 1: a new classifier (subclass `ClassifyTask`)") == \
        "route-1-a-new-classifier-subclass-classifytask"
