"""The query examples: the README's commands run as written, and errors are one line."""

from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
HIT = re.compile(r"^(\d\.\d{6})  (\S+ #\d+  \S+)$")  # score with six decimals, file #chunk, document


def readme_commands(heading: str) -> list[str]:
    """The lines of the first ```bash block after ``heading`` in README.md, pip installs left out."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```bash\n(.*?)```", text[text.index(heading):], re.S).group(1)
    return [line for line in block.splitlines() if line.strip() and "pip install" not in line]


def argv(line: str) -> list[str]:
    """A README line as the venv runs it: its console scripts and its python."""
    words = shlex.split(line, comments=True)
    if words[0] == "python":
        return [sys.executable, *words[1:]]
    return [str(Path(sys.executable).parent / words[0]), *words[1:]]


def hits(stdout: str) -> list[tuple[float, str]]:
    return [(float(m.group(1)), m.group(2)) for m in map(HIT.match, stdout.splitlines()) if m]


@pytest.mark.slow
def test_readme_query_sequence_runs_as_written(tmp_path, tiny_model_dir):
    pytest.importorskip("fastembed", reason="query_fastembed.py needs the fastembed extra")
    shutil.copytree(EXAMPLES, tmp_path / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    env = {"PATH": str(Path(sys.executable).parent), "SGPT_MODEL": str(tiny_model_dir), "HF_HUB_OFFLINE": "1",
           "SGPT_CACHE_DIR": str(tmp_path / "cache"), "TOKENIZERS_PARALLELISM": "false", "HOME": str(tmp_path)}
    ingest = [line for line in readme_commands("**Without the Hub**") if line.startswith("sgpt-ingest")]
    lines = ingest + readme_commands("## Query") + readme_commands("**FastEmbed**")
    outputs = {}
    for line in lines:
        proc = subprocess.run(argv(line), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{line}\n{proc.stderr}"
        outputs[line] = proc.stdout
    by_name = {Path(shlex.split(line)[1]).name: out for line, out in outputs.items() if line.startswith("python")}
    assert set(by_name) == {"query_qdrant.py", "query_llamaindex.py", "query_fastembed.py"}
    torch_hits, qdrant_hits = hits(by_name["query_qdrant.py"]), hits(by_name["query_fastembed.py"])
    assert len(torch_hits) == 3 and all(h.startswith("bees.rst #") for _, h in torch_hits)
    assert [h for _, h in qdrant_hits] == [h for _, h in torch_hits]  # same hits, same order, same format
    assert all(abs(a - b) <= 2e-6 for (a, _), (b, _) in zip(qdrant_hits, torch_hits))
    assert len(hits(by_name["query_llamaindex.py"])) == 3


def _example(name: str):
    """An example script imported as a module (its folder on sys.path for its _query helper)."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(EXAMPLES))
    return module


@pytest.mark.parametrize("name", ["query_qdrant", "query_llamaindex"])
def test_a_model_that_cannot_load_is_one_line_exit_2(name, examples_store, monkeypatch):
    monkeypatch.delenv("SGPT_MODEL", raising=False)  # the Hub default, offline and uncached here
    result = CliRunner().invoke(_example(name).main, ["bees", "--qdrant-path", str(examples_store)])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: cannot fetch")
    assert isinstance(result.exception, SystemExit)  # a clean exit, no traceback


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
def test_nothing_found_says_so_and_exits_1(examples_store, tiny_model_dir):
    result = CliRunner().invoke(_example("query_qdrant").main, [
        "bees", "--qdrant-path", str(examples_store), "--model", str(tiny_model_dir), "--file-name", "bees.md"])
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr == "no match: collection 'documents' (file_name 'bees.md') holds no chunk for this query\n"


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
def test_store_problems_are_one_line_exit_2(examples_store, tiny_model_dir, tmp_path):
    main = _example("query_qdrant").main
    for args, says in [(["--qdrant-path", str(tmp_path / "none")], "no Qdrant store here"),
                       (["--qdrant-path", str(examples_store), "--collection", "other"], "collection 'other' does not exist"),
                       (["--qdrant-url", "http://127.0.0.1:9"], "cannot query Qdrant at http://127.0.0.1:9")]:
        result = CliRunner().invoke(main, ["bees", "--model", str(tiny_model_dir), *args])
        assert result.exit_code == 2 and result.stderr.count("\n") == 1 and says in result.stderr
    assert not (tmp_path / "none").exists()  # a query never creates a store


def test_fastembed_example_missing_export_is_one_line_exit_2(examples_store, tmp_path):
    pytest.importorskip("fastembed", reason="query_fastembed.py needs the fastembed extra")
    result = CliRunner().invoke(_example("query_fastembed").main, [
        "bees", "--qdrant-path", str(examples_store), "--model", str(tmp_path / "no-export")])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "no SGPT FastEmbed export here; build it with `sgpt-export-fastembed" in result.stderr


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
@pytest.mark.parametrize("name", ["query_qdrant", "query_llamaindex"])
def test_a_store_held_by_another_process_is_one_line_saying_wait_or_use_a_server(name, examples_store,
                                                                                 tiny_model_dir):
    from sgpt_qdrant.ingest.edge import EdgeClient

    with EdgeClient(examples_store):  # as an sgpt-ingest run holds it (the lock is per open, not per process)
        result = CliRunner().invoke(_example(name).main, ["bees", "--qdrant-path", str(examples_store),
                                                          "--model", str(tiny_model_dir)])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
    assert "in use by another process" in result.stderr and "wait for it or use a Qdrant server" in result.stderr

