"""notebooks/: no outputs committed, every .ipynb paired with its jupytext .py and in sync,
a cell tagged `parameters` with the parameters issue #4 asks for."""

from pathlib import Path

import jupytext
import nbformat
import pytest

NB_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("*.ipynb"))
REQUIRED = {"data_path", "subset", "formats", "output_dir"}


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 5


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_outputs_and_paired(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name} has outputs"
    py = path.with_suffix(".py")
    assert py.exists(), f"{path.name} has no jupytext pair"
    paired = jupytext.read(py)
    assert [c.source for c in paired.cells] == [c.source for c in nb.cells], \
        f"{path.name} and {py.name} differ: run `jupytext --sync {py}`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell(path):
    nb = nbformat.read(path, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    names = {line.split("=")[0].strip() for line in tagged[0].source.splitlines() if "=" in line}
    assert REQUIRED <= names
