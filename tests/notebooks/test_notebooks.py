"""The notebooks in ``notebooks/`` run top to bottom in a real Jupyter kernel (nbclient),
so they never rot; they are committed without outputs.

Each notebook lists the packaged models it serves in its metadata
(``{"localinfer": {"requires": [...]}}``); it is skipped, saying which, when one is not
installed (``scripts/install.sh`` installs them all).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from localinfer.hub.packaged import packaged_path
from localinfer.plugins import discover

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = sorted((Path(__file__).parents[2] / "notebooks").glob("*.ipynb"))
#: a cell's limit; a whole notebook takes 5-20 s on two cores once the GGUF cache is warm
CELL_TIMEOUT_S = 180


def missing_models(book: object) -> list[str]:
    wanted = book.metadata.get("localinfer", {}).get("requires", [])  # type: ignore[attr-defined]
    catalog = discover().catalog
    return [
        alias
        for alias in wanted
        if (entry := catalog.get(alias)) is None
        or entry.packaged is None
        or packaged_path(entry.packaged) is None
    ]


def test_notebooks_are_committed_without_outputs() -> None:
    assert NOTEBOOKS, "no notebooks found"
    for path in NOTEBOOKS:
        book = nbformat.read(path, as_version=4)
        for cell in book.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, path.name


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path: Path, tmp_path: Path) -> None:
    # the kernel inherits this process's OpenMP wait (set on `import localinfer`, before
    # the kernel's torch loads: localinfer/openmp.py), as a notebook that imports it first
    book = nbformat.read(path, as_version=4)
    missing = missing_models(book)
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed: run `bash scripts/install.sh`")
    client = nbclient.NotebookClient(
        book,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},  # the notebooks write nothing here
    )
    client.execute()
