"""docs/sklearn.md: every code block runs as written, and the tables name every parameter and
attribute of scikit-learn's MLPs."""
# ruff: noqa: E402  (SCIPY_ARRAY_API must be set before scikit-learn and SciPy are imported)

from __future__ import annotations

import os

os.environ.setdefault("SCIPY_ARRAY_API", "1")

import inspect
import re
import warnings
from pathlib import Path

import pytest

pytest.importorskip("sklearn")

from sklearn.neural_network import MLPClassifier, MLPRegressor

DOC = Path(__file__).resolve().parents[1] / "docs" / "sklearn.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_code_block_runs(index):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarnings of the short examples
        exec(compile(BLOCKS[index], f"{DOC.name}[{index}]", "exec"), {"__name__": "__doc__"})


def test_tables_name_every_parameter_and_attribute():
    text = DOC.read_text()
    names = set(inspect.signature(MLPClassifier).parameters)
    names |= set(inspect.signature(MLPRegressor).parameters)
    doc = MLPClassifier.__doc__ + MLPRegressor.__doc__
    attributes = doc[doc.index("Attributes\n"):doc.index("See Also")]
    names |= set(re.findall(r"^    (\w+_) :", attributes, flags=re.M))
    missing = sorted(n for n in names if f"`{n}`" not in text)
    assert not missing and len(names) > 30


def test_readme_tables_are_the_docs_tables():
    """README.md repeats docs/sklearn.md's parameter and attribute tables: row for row."""
    readme = (DOC.parents[1] / "README.md").read_text()
    readme = readme[readme.index("### Every parameter"):]
    rows = [line for line in DOC.read_text().splitlines() if line.startswith("| `")]
    readme_rows = [line for line in readme.splitlines() if line.startswith("| `")]
    assert len(rows) > 30 and readme_rows[:len(rows)] == rows
