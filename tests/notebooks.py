"""Running the docs/ notebooks: in a Jupyter kernel of this interpreter, on the sample data set.

The kernel is this interpreter's ipykernel, from a kernel spec written to a temporary folder
(the venv's own ``python3`` spec runs whatever ``python`` is first on PATH). It imports
fedquery from this checkout (PYTHONPATH) and builds the sample set into a temporary
``FEDQUERY_SAMPLE_DIR``. Cells tagged ``needs-profile-api`` use the issue-9 Profile (SELECT
sources, thumbnails, embeddings): without it they are left out, and the rest still runs.
An executed notebook is kept for the session, for the tests that look at its outputs.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
NOTEBOOKS = ("sql_from_python", "profiling", "similarity", "text_to_image")
PROFILE_API_TAG = "needs-profile-api"
KERNEL = "fedquery-tests"
TIMEOUT = 300  # seconds a cell may take

_executed: dict[str, object] = {}


def has_profile_api() -> bool:
    """Whether fedquery.profile.Profile is the issue-9 model (thumbnails and embeddings)."""
    from fedquery.profile import Profile

    fields = getattr(Profile, "__dataclass_fields__", {})
    return all(name in fields or hasattr(Profile, name) for name in ("thumbnails", "embeddings"))


def jupyter_modules():
    """nbformat and nbclient, or a skip (a failure under CI=true, where they must be there)."""
    try:
        import nbclient
        import nbformat
    except ImportError as exc:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"the notebook tests need the dev extras (nbclient, ipykernel): {exc}")
    return nbformat, nbclient


def executed(name: str, tmp_path_factory: pytest.TempPathFactory):
    """The notebook ``docs/<name>.ipynb`` after running every cell (once a session)."""
    if name not in _executed:
        _executed[name] = _execute(name, tmp_path_factory)
    return _executed[name]


def _execute(name: str, tmp_path_factory: pytest.TempPathFactory):
    nbformat, nbclient = jupyter_modules()
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    nb = nbformat.read(DOCS / f"{name}.ipynb", as_version=4)
    if not has_profile_api():
        nb.cells = [c for c in nb.cells if PROFILE_API_TAG not in c.metadata.get("tags", [])]
    specs = _kernel_spec(tmp_path_factory)
    km = AsyncKernelManager(kernel_name=KERNEL, kernel_spec_manager=KernelSpecManager(kernel_dirs=[specs]))
    workdir = tmp_path_factory.mktemp(f"notebook-{name}")
    client = nbclient.NotebookClient(nb, km=km, timeout=TIMEOUT, resources={"metadata": {"path": workdir}})
    client.execute(env=_kernel_env(tmp_path_factory), cwd=str(workdir))
    return nb


def _kernel_spec(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.getbasetemp() / "kernels"
    spec = root / KERNEL / "kernel.json"
    if not spec.exists():
        spec.parent.mkdir(parents=True)
        spec.write_text(json.dumps({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "fedquery tests", "language": "python"}))
    return str(root)


def _kernel_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["FEDQUERY_SAMPLE_DIR"] = str(tmp_path_factory.getbasetemp() / "notebook-sample")
    env["JUPYTER_PLATFORM_DIRS"] = "1"
    return env


def outputs(nb, mime: str) -> list[str]:
    """Every output of the executed notebook with this MIME type, as text."""
    found = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if mime in data:
                value = data[mime]
                found.append("".join(value) if isinstance(value, list) else value)
            elif mime == "text/plain" and out.get("output_type") == "stream":
                found.append(out.get("text", ""))
    return found
