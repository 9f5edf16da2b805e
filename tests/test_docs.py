"""The documentation: the reference site builds without a warning, the README starts as promised.

The code blocks themselves run as tests of their own (Sybil, see the root conftest.py).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "ci"))
import mkdocs_hooks  # noqa: E402  (ci/ is not a package)


def _require(module: str) -> None:
    """Skip without the docs extra, except in CI, where a missing extra is a failure."""
    if os.environ.get("CI"):
        __import__(module)
    else:
        pytest.importorskip(module, reason="needs the docs extra: pip install -e '.[docs]'")


def _sections(markdown: str) -> list[str]:
    return re.findall(r"^## (.+)$", markdown, re.M)


def test_readme_opens_with_one_paragraph_then_the_quickstart():
    text = (ROOT / "README.md").read_text()
    intro = text.split("\n## ", 1)[0].split("\n", 1)[1].strip()
    assert "\n\n" not in intro  # one paragraph
    assert _sections(text)[:2] == ["Quickstart", "Install"]
    quick = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    # install, a complete example, its expected output, and the check of that output
    assert quick.index("```bash") < quick.index("```python") < quick.index("```text")
    example = quick.split("```python", 1)[1].split("```", 1)[0].strip().splitlines()
    assert len(example) <= 12 and example[0] == "import xpnet"
    expected = quick.split("```text", 1)[1].split("```", 1)[0].strip()
    assert expected in quick.split("invisible-code-block: python", 1)[1]


def test_readme_links_the_reference_site_and_backends_page():
    text = (ROOT / "README.md").read_text()
    assert "make docs" in text and "docs/backends.md" in text


def test_every_public_module_gets_a_page():
    names = mkdocs_hooks.public_modules()
    assert {"xpnet", "xpnet.network", "xpnet.cli", "xpnet.backends.torch",
            "xpnet.layers.dense"} <= set(names)
    assert not [n for n in names if any(part.startswith("_") for part in n.split("."))]
    index = mkdocs_hooks._index_page(names)
    assert all(f"({name}.md)" in index for name in names)


def test_cli_page_has_every_command_and_the_own_data_flags():
    page = mkdocs_hooks.cli_page()
    for heading in ("## `xpnet train`", "## `xpnet evaluate`", "## `xpnet show-examples`"):
        assert heading in page
    assert "--csv FILE" in page and "docs/backends.md" in page
    assert "--backup-dir DIR" in page and "--backup-every epoch|N" in page


def test_every_page_with_python_is_collected_by_the_docs_tests():
    """A page added under docs/ (docs/deploy.md, ...) runs without touching any configuration."""
    pages = [p for p in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
             if "```python" in p.read_text()]
    result = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                             "-p", "no:cacheprovider", "README.md", "docs"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    collected = {line.split("::", 1)[0] for line in result.stdout.splitlines() if "::" in line}
    assert len(pages) >= 3
    assert {str(p.relative_to(ROOT)) for p in pages} <= collected, result.stdout


@pytest.mark.slow
def test_mkdocs_strict_build(tmp_path):
    _require("mkdocs")
    _require("mkdocstrings_handlers.python")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # a banner, not a finding
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                             str(tmp_path / "site")], cwd=ROOT, capture_output=True,
                            text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    findings = [line for line in result.stderr.splitlines() if "WARNING" in line]
    assert findings == [], result.stderr
    site = tmp_path / "site"
    for name in mkdocs_hooks.public_modules():
        page = (site / "api" / name / "index.html").read_text()
        assert f'id="{name}.' in page or name == "xpnet", name  # members rendered
    assert "usage: xpnet train" in (site / "cli" / "index.html").read_text()
    assert "test accuracy: 0.96" in (site / "index.html").read_text()  # the README snippet
