"""The tour notebook runs top to bottom in a fresh kernel of this interpreter."""

import json
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

TOUR = Path(__file__).resolve().parents[1] / "notebooks" / "tour.py"

# Generous: the first cells compile JAX programs and the exporter starts worker
# processes, all of which is slow on a small shared CI machine.
CELL_TIMEOUT_S = 600

# Figures the tour draws: graph, latents, presses, one pair per label,
# counterfactual, contact sheet.
N_FIGURES = 6

# A kernel name of our own, so that no "python3" kernel installed elsewhere
# (in the user's home, say, pointing at another Python) can be picked instead.
KERNEL_NAME = "ccjax-test-python"


def _install_kernelspec(jupyter_dir: Path) -> None:
    """Declare a kernel that runs ipykernel in exactly this interpreter."""
    spec_dir = jupyter_dir / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "ccjax test kernel",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))


def _stream_text(cell, name: str = "stdout") -> str:
    return "".join(
        out["text"]
        for out in cell.get("outputs", [])
        if out["output_type"] == "stream" and out["name"] == name
    )


@pytest.mark.slow
def test_tour_runs_top_to_bottom(tmp_path, monkeypatch):
    # Jupyter looks for kernels in JUPYTER_PATH first; keep its connection files
    # in the test's directory too.
    _install_kernelspec(tmp_path / "jupyter")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    # The kernel inherits this environment; a backend forced here (CI machines
    # often set Agg) would keep figures out of the notebook.
    monkeypatch.delenv("MPLBACKEND", raising=False)

    notebook = jupytext.read(TOUR)
    # Prepended to the in-memory copy only: report which environment the kernel
    # runs in (the prefix tells a virtual environment from the Python it was
    # made from, which a resolved executable path would not).
    notebook.cells.insert(0, nbformat.v4.new_code_cell("import sys\nprint(sys.prefix)"))

    # The kernel's working directory is the test's, and the executed notebook is
    # written there (for a look after a failure), never into the repository.
    client = NotebookClient(
        notebook,
        kernel_name=KERNEL_NAME,
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    try:
        client.execute()  # raises CellExecutionError on the first failing cell
    finally:
        nbformat.write(notebook, tmp_path / "tour.ipynb")

    kernel_prefix = _stream_text(notebook.cells[0]).strip()
    assert kernel_prefix == sys.prefix, (
        f"the kernel ran in {kernel_prefix}, not in this environment {sys.prefix}"
    )
    figures = [
        out
        for cell in notebook.cells
        for out in cell.get("outputs", [])
        if "image/png" in out.get("data", {})
    ]
    assert len(figures) == N_FIGURES, (
        f"the tour showed {len(figures)} figures, expected {N_FIGURES}; see "
        f"{tmp_path / 'tour.ipynb'}"
    )
