"""Every ```python block of the README and the docs site runs, as a reader would paste it.

The blocks of one document run in order in one namespace (a page may build on
its earlier examples), in a fresh working directory, with top-level ``await``
allowed. A block that cannot run here (it needs a cluster, or shows only a
fragment) is marked by an HTML comment on the line before its fence,
``<!-- not-run: why -->``, and the reason is required. Managers a document
built are closed at the end so Redis clients do not leak.
"""

from __future__ import annotations

import ast
import asyncio
import contextvars
import inspect
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from asess import SessionManager

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parent.parent
# Every Markdown file a reader meets: the repository's own (README, PYPI, ...) and the site's.
DOCUMENTS = sorted([*ROOT.glob("*.md"), *(ROOT / "docs").rglob("*.md")], key=str)
FENCE = re.compile(r"^```(\w*)\s*$")
NOT_RUN = re.compile(r"^<!--\s*not-run:\s*(.*?)\s*-->\s*$")
# Modules a snippet may need that are optional here; their absence skips the document.
OPTIONAL = ("emmett", "fastapi", "starlette", "redis", "aiohttp", "asyncpg")


@dataclass
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    source: str
    not_run: str | None  # the reason, when the block is marked


def blocks(path: Path) -> list[Block]:
    found: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match or not match.group(1):
            i += 1
            continue
        start, lang = i, match.group(1)
        i += 1
        body: list[str] = []
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i])
            i += 1
        i += 1
        if lang != "python":
            continue
        marker = NOT_RUN.match(lines[start - 1]) if start else None
        found.append(Block(path, start + 1, "\n".join(body) + "\n", marker and marker.group(1)))
    return found


def _label(path: Path) -> str:
    return str(path.relative_to(ROOT))


async def _run(document: list[Block]) -> int:
    # A name of its own per document: Emmett keys each App by its module name.
    namespace: dict[str, Any] = {"__name__": f"snippet_{uuid.uuid4().hex[:8]}"}
    ran = 0
    try:
        for block in document:
            if block.not_run is not None:
                continue
            code = compile(
                block.source,
                f"{_label(block.path)}:{block.line}",
                "exec",
                flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
            )
            if code.co_flags & inspect.CO_COROUTINE:
                await eval(code, namespace)
            else:
                exec(code, namespace)
            ran += 1
    finally:
        for value in list(namespace.values()):
            if isinstance(value, SessionManager):
                await value.aclose()
    return ran


def test_documents_exist() -> None:
    assert {ROOT / "README.md", ROOT / "PYPI.md", ROOT / "docs" / "index.md"} <= set(DOCUMENTS)
    assert sum(len(blocks(p)) for p in DOCUMENTS) >= 10


def test_every_marked_block_says_why() -> None:
    for path in DOCUMENTS:
        for block in blocks(path):
            if block.not_run is not None:
                assert len(block.not_run) >= 10, f"{_label(path)}:{block.line}: give a reason"
        # A marker must sit right before a python fence, or it marks nothing.
        lines = path.read_text(encoding="utf-8").splitlines()
        for n, line in enumerate(lines):
            if NOT_RUN.match(line):
                nxt = lines[n + 1] if n + 1 < len(lines) else ""
                assert nxt.startswith("```python"), f"{_label(path)}:{n + 1}: stray not-run marker"


@pytest.mark.parametrize(
    "path", [p for p in DOCUMENTS if any(b.not_run is None for b in blocks(p))], ids=_label
)
def test_python_blocks_run(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    document = blocks(path)
    runnable = [b for b in document if b.not_run is None]
    source = "".join(b.source for b in runnable)
    for module in OPTIONAL:
        if re.search(rf"^\s*(from|import) {module}\b", source, re.M):
            pytest.importorskip(module)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    # An event loop of its own per document, in a copy of this context: frameworks set
    # context variables at import (Emmett's `current`, imported above in this context).
    ran = contextvars.copy_context().run(asyncio.run, _run(document))
    with capsys.disabled():
        print(f"\n{_label(path)}: {ran} python snippets run, {len(document) - ran} marked not-run")
    assert ran == len(runnable)
    assert os.getcwd() == str(tmp_path)


def test_a_broken_snippet_fails(tmp_path: Path) -> None:
    # The runner itself must catch the kind of error the README once had.
    doc = tmp_path / "broken.md"
    doc.write_text("```python\nasync with thing as x:\n    pass\n```\n")
    broken = [Block(ROOT / "README.md", b.line, b.source, b.not_run) for b in blocks(doc)]
    with pytest.raises(NameError):
        asyncio.run(_run(broken))
