"""Issue 21: Ctrl-C at any moment of ``sgpt-ingest`` is one line and exit 130, also when a library
swallows the KeyboardInterrupt (one raised in a destructor or callback is only printed)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from sgpt_qdrant.ingest import cli as cli_mod
from sgpt_qdrant.ingest import pipeline


def _wall(argv: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(argv, check=True)
    return time.perf_counter() - t


def _tree(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(20):
        (docs / f"d{i}.md").write_text(f"document {i}: " + "words about a topic " * 50 + "\n")
    return docs


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
def test_a_swallowed_interrupt_still_ends_the_run_with_130(tmp_path, tiny_model_dir, monkeypatch):
    discover = pipeline.discover

    def swallowing_discover(*args, **kwargs):  # a library that eats the KeyboardInterrupt
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            pass
        return discover(*args, **kwargs)

    monkeypatch.setattr(pipeline, "discover", swallowing_discover)
    monkeypatch.setattr(cli_mod, "_sigint_seen", False)
    previous = signal.signal(signal.SIGINT, cli_mod._on_sigint)  # what main() installs
    try:
        result = CliRunner().invoke(cli_mod.cli, [str(_tree(tmp_path)), "--qdrant-path", str(tmp_path / "store"),
                                                  "--model", str(tiny_model_dir), "-q"])
    finally:
        signal.signal(signal.SIGINT, previous)
    assert result.exit_code == 130, result.output
    assert result.output.strip().splitlines() == [
        "sgpt-ingest: interrupted; what was written is consistent: run the same command again to finish"]


@pytest.mark.slow
def test_sigint_at_any_moment_of_start_up_and_run_is_one_line_and_130(tmp_path, tiny_model_dir):
    docs = _tree(tmp_path)
    script = Path(sys.executable).with_name("sgpt-ingest")
    accepted = {"sgpt-ingest: interrupted before any work; nothing was written",
                "sgpt-ingest: interrupted; what was written is consistent: run the same command again to finish"}
    # The interpreter's own start-up (site and its .pth files) runs before any code of ours can
    # install a handler, and site swallows an interrupt in a .pth file ("Remainder of file
    # ignored"): the first moment is after that start-up, as measured on this machine now.
    interpreter = min(_wall([sys.executable, "-c", "pass"]) for _ in range(3))
    for delay in (max(0.1, 2 * interpreter), 0.3, 0.6, 1.0, 1.5, 2.0, 3.0):
        store = tmp_path / "store"
        shutil.rmtree(store, ignore_errors=True)
        proc = subprocess.Popen([str(script), str(docs), "--qdrant-path", str(store), "--model", str(tiny_model_dir),
                                 "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=300)
        if delay < 0.3 and proc.returncode == 0 and not out + err:
            # on a loaded machine the first moment can still fall inside the interpreter's start-up,
            # where site swallows the interrupt: then the run is not interrupted at all and must be whole
            check = subprocess.run([str(script), str(docs), "--qdrant-path", str(store), "--model",
                                    str(tiny_model_dir), "--dry-run", "--json"], capture_output=True, text=True)
            assert check.returncode == 0 and json.loads(check.stdout)["unchanged"] == json.loads(check.stdout)["files_seen"]
            continue
        assert proc.returncode == 130, (delay, out, err)
        lines = (out + err).strip().splitlines()
        assert len(lines) == 1 and lines[0] in accepted, (delay, out, err)
