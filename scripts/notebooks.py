#!/usr/bin/env python3
"""Executes every notebook in notebooks/ headless with the evcxr kernel.

A cell that fails fails the run (exit 1, naming the notebook and the cell).
All notebooks share one evcxr build directory (EVCXR_TMPDIR, by default
target/evcxr), so the crate and its dependencies compile once, for the
first notebook, and are reused by the others and by later runs.

    python3 scripts/notebooks.py            # execute, leave the files as they are
    python3 scripts/notebooks.py --write    # and store the outputs in the files
    python3 scripts/notebooks.py runs.ipynb # only these notebooks
"""

import argparse
import os
import sys
import time
from pathlib import Path

import nbclient
import nbformat

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"


def first_error(notebook):
    """(index, source, message) of the first code cell whose output is an error."""
    index = 0
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        index += 1
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                lines = [output.get("ename", ""), output.get("evalue", "")]
                lines += output.get("traceback", [])
                return index, cell.source, "\n".join(line for line in lines if line)
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="notebook files in notebooks/ (default: all)")
    parser.add_argument("--write", action="store_true", help="write the outputs into the notebooks")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds a cell may take")
    args = parser.parse_args()

    os.environ.setdefault("EVCXR_TMPDIR", str(ROOT / "target" / "evcxr"))
    Path(os.environ["EVCXR_TMPDIR"]).mkdir(parents=True, exist_ok=True)
    paths = [NOTEBOOKS / name for name in args.names] or sorted(NOTEBOOKS.glob("*.ipynb"))
    if not paths:
        print("error: no notebooks in notebooks/", file=sys.stderr)
        return 1
    # The notebook that compiles the crate first runs first.
    paths.sort(key=lambda p: p.name != "cholesky.ipynb")
    for path in paths:
        notebook = nbformat.read(path, as_version=4)
        client = nbclient.NotebookClient(
            notebook,
            timeout=args.timeout,
            kernel_name="rust",
            allow_errors=True,
            resources={"metadata": {"path": str(NOTEBOOKS)}},
        )
        start = time.monotonic()
        try:
            client.execute()
        except nbclient.exceptions.CellTimeoutError as error:
            print(f"error: {path.name}: a cell took longer than {args.timeout} s:\n{error}", file=sys.stderr)
            return 1
        failed = first_error(notebook)
        if failed is not None:
            index, source, message = failed
            print(
                f"error: {path.name}: code cell {index} failed:\n{source}\n--- its error:\n{message}",
                file=sys.stderr,
            )
            return 1
        cells = sum(1 for cell in notebook.cells if cell.cell_type == "code")
        print(f"== {path.name}: {cells} code cells in {time.monotonic() - start:.0f} s")
        if args.write:
            for cell in notebook.cells:
                # Timings differ from run to run; the outputs are what matters.
                cell.get("metadata", {}).pop("execution", None)
            nbformat.write(notebook, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
