"""The import layers declared in pyproject.toml ([tool.importlinter]), checked by import-linter.

The checkout keeps ingest/ at the top while it installs as ``sgpt_qdrant.ingest``; import-linter
reads files, so it is run on a view of the installed layout (symlinks, nothing copied) in which a
core module's ``from .ingest import ...`` is visible as the import it is.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("importlinter", reason="needs import-linter (the test extra)")
#: ``lint-imports`` of this interpreter (the console script may live in another venv's bin/).
LINT = [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()"]


def _view(tmp_path: Path, replaced: dict[str, str] | None = None) -> Path:
    """``sgpt_qdrant/`` with ``ingest/`` inside it; ``replaced`` maps a file name to other contents."""
    replaced = replaced or {}
    package = tmp_path / "sgpt_qdrant"
    package.mkdir()
    for entry in (ROOT / "sgpt_qdrant").iterdir():
        if entry.name in replaced:
            (package / entry.name).write_text(replaced[entry.name], encoding="utf-8")
        elif entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    (package / "ingest").symlink_to(ROOT / "ingest")
    (tmp_path / "pyproject.toml").symlink_to(ROOT / "pyproject.toml")
    return tmp_path


def _lint(view: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*LINT, "--no-cache"], cwd=view, capture_output=True, text=True, timeout=120)


def test_every_layer_imports_only_the_layers_below_it(tmp_path):
    result = _lint(_view(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 kept, 0 broken" in result.stdout


def test_a_core_module_importing_the_ingest_is_caught(tmp_path):
    tokens = (ROOT / "sgpt_qdrant" / "tokens.py").read_text(encoding="utf-8")
    result = _lint(_view(tmp_path, {"tokens.py": tokens + "\nfrom .ingest import plan  # noqa\n"}))
    assert result.returncode == 1
    assert "sgpt_qdrant.tokens -> sgpt_qdrant.ingest.plan" in result.stdout
    assert "only the ingest imports the ingest" in result.stdout and "BROKEN" in result.stdout
