"""Commands that answer at once and say the right thing: refusals before heavy imports, no Ray for
nothing to embed, dry runs in "would" words, a summary that fits 80 columns, the CLI's own flag
names in its messages, the command's wall time as its printed duration."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from sgpt_qdrant.ingest import pipeline
from sgpt_qdrant.ingest.cli import SUMMARY_WIDTH, _summary_lines, cli
from sgpt_qdrant.ingest.client import StoreTarget
from sgpt_qdrant.ingest.distributed import RayOptions
from sgpt_qdrant.ingest.run import Summary

BIN = Path(sys.executable).parent


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))


def _docs(root: Path) -> Path:
    root.mkdir()
    (root / "a.md").write_text("# Bees\n\nBees find flowers by scent and colour.\n")
    (root / "b.txt").write_text("Tides come twice a day because of the moon.\n")
    return root


@pytest.mark.parametrize("args, message", [
    (["--output", "{out}"], "already holds a model or run"),
    (["--output", "{tmp}/new", "--sts-dev", "{tmp}/nope.csv"], "--sts-dev: {tmp}/nope.csv: no such STS file"),
    (["--output", "{tmp}/new", "--sts-test", "{tmp}/nope.csv"], "--sts-test: {tmp}/nope.csv: no such STS file"),
])
def test_sgpt_train_refuses_before_importing_torch(tmp_path, args, message):
    out = tmp_path / "out"
    out.mkdir()
    (out / "modules.json").write_text("[]")
    (tmp_path / "data.tsv").write_text("a\tb\tc\n")
    fill = {"out": str(out), "tmp": str(tmp_path)}
    argv = ["--data", str(tmp_path / "data.tsv")] + [a.format(**fill) for a in args]
    code = ("import sys; from click.testing import CliRunner; from sgpt_qdrant.train.cli import main; "
            f"r = CliRunner().invoke(main, {argv!r}); print(r.exit_code); print(r.output); "
            "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "2" and message.format(**fill) in result.stdout, result.stdout + result.stderr
    assert lines[-1] == "False", "torch was imported before the refusal"


#: What an answer without work to do must not import (seconds of start-up between them).
HEAVY = ("qdrant_client", "transformers", "torch", "llama_index")


def _answers(steps: dict[str, list[str]], hold: str | None = None) -> dict[str, list]:
    """sgpt-ingest ``argv`` per step in one fresh interpreter: [exit status, output, the heavy libraries
    imported so far]. ``hold``: a store folder held open (by this interpreter) from the step "in use" on."""
    code = (f"import json, sys; from click.testing import CliRunner; from sgpt_qdrant.ingest.cli import cli\n"
            f"out = {{}}\n"
            f"for name, argv in {steps!r}.items():\n"
            f"    if name == 'in use':\n"
            f"        from sgpt_qdrant.ingest.edge import EdgeClient; held = EdgeClient({hold!r})\n"
            f"    r = CliRunner().invoke(cli, argv)\n"
            f"    out[name] = [r.exit_code, r.output, [m for m in {HEAVY!r} if m in sys.modules]]\n"
            f"print(json.dumps(out))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_missing_path_is_refused_before_any_heavy_import(tmp_path):
    out = _answers({"missing path": [str(tmp_path / "nope"), "--qdrant-path", str(tmp_path / "q")]})
    assert out == {"missing path": [2, f"sgpt-ingest: error: {tmp_path / 'nope'}: no such file or folder\n", []]}


@pytest.mark.slow  # a first run, then a fresh interpreter for three answers: seconds
def test_sgpt_ingest_with_nothing_to_do_imports_no_heavy_library(tmp_path, tiny_model_dir, tiny_encoder):
    docs = _docs(tmp_path / "docs")
    store = str(tmp_path / "q")
    first = pipeline.ingest_paths([docs], store=StoreTarget(store), model=str(tiny_model_dir), encoder=tiny_encoder)
    assert first.new == 2
    common = ["--model", str(tiny_model_dir), "--qdrant-path", store]
    steps = {"unchanged": [str(docs), *common], "dry run": [str(docs), "--dry-run", *common],
             "in use": [str(docs), *common]}
    out = _answers(steps, hold=store)
    assert out["unchanged"][0] == 0 and "0 new, 0 changed, 2 unchanged; 0 chunks written" in out["unchanged"][1], out
    assert out["dry run"][0] == 0 and "dry run: 2 files: 0 new, 0 changed, 2 unchanged" in out["dry run"][1], out
    assert out["in use"][0] == 2 and "in use by another process" in out["in use"][1], out
    assert {name: imported for name, (_, _, imported) in out.items()} == {name: [] for name in steps}


@pytest.mark.slow  # two runs up to the first file to chunk (the model files fingerprinted each time)
def test_a_damaged_tokenizer_is_a_set_up_error_at_the_first_file_to_chunk(tmp_path, tiny_model_dir):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    (model / "tokenizer.json").write_text("{broken")
    docs = _docs(tmp_path / "docs")
    with pytest.raises(pipeline.IngestError, match=r"tokenizer\.json: cannot be read as a GPT-2 tokenizer"):
        pipeline.ingest_paths([docs], store=StoreTarget(tmp_path / "q"), model=str(model))
    result = CliRunner().invoke(cli, [str(docs), "--model", str(model), "--qdrant-path", str(tmp_path / "q2")])
    assert result.exit_code == 2 and "failed" not in result.output, result.output
    assert result.output.count("tokenizer.json: cannot be read") == 1, result.output


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
def test_ray_with_nothing_to_embed_runs_in_process(tmp_path, tiny_model_dir, monkeypatch):
    docs = _docs(tmp_path / "docs")
    common = dict(store=StoreTarget(tmp_path / "q"), model=str(tiny_model_dir))
    first = pipeline.ingest_paths([docs], **common, options=pipeline.IngestOptions(device="cpu"))
    assert first.new == 2

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray was started for an unchanged corpus")

    monkeypatch.setattr(pipeline, "ray_sync", no_ray)
    again = pipeline.ingest_paths([docs], **common, options=pipeline.IngestOptions(ray=RayOptions(), prune=True))
    assert (again.unchanged, again.new, again.chunks_written) == (2, 0, 0)
    (docs / "b.txt").unlink()  # a prune alone embeds nothing either
    pruned = pipeline.ingest_paths([docs], **common, options=pipeline.IngestOptions(ray=RayOptions(), prune=True))
    assert (pruned.unchanged, pruned.documents_deleted) == (1, 1)
    (docs / "c.txt").write_text("Lighthouses warn ships at night.\n")
    with pytest.raises(AssertionError, match="Ray was started"):  # something to embed: Ray it is
        pipeline.ingest_paths([docs], **common, options=pipeline.IngestOptions(ray=RayOptions()))


def test_summary_fits_80_columns_and_a_dry_run_says_would():
    big = Summary(files_seen=120_000, ingested=30_000, new=20_000, changed=10_000, unchanged=89_000,
                  skipped=700, failed=300, chunks_written=1_234_567, chunks_deleted=45_678,
                  documents_deleted=1_234, seconds=12_345.6)
    lines = _summary_lines(big)
    assert 2 <= len(lines) <= 3 and all(len(line) <= SUMMARY_WIDTH for line in lines), lines
    assert lines[-1].lstrip().startswith("1234567 chunks written")
    text = " ".join(lines)
    assert "20000 new," in text and "1234567 chunks written," in text and "pruned in 12345.6s" in text
    small = Summary(files_seen=4, ingested=4, new=4, chunks_written=11, seconds=2.5)
    assert _summary_lines(small) == ["sgpt-ingest: 4 files: 4 new, 0 changed, 0 unchanged; 11 chunks written in 2.5s"]
    dry = Summary(files_seen=4, new=3, unchanged=1, chunks_written=9, chunks_deleted=2, documents_deleted=1,
                  dry_run=True, seconds=0.4)
    lines = _summary_lines(dry)
    line = " ".join(lines)
    assert "would write 9 chunks" in line and "would delete 2" in line and "would prune 1 documents" in line
    assert "written" not in line and "ingested" not in line and all(len(x) <= SUMMARY_WIDTH for x in lines)
    as_json = dry.to_dict()
    assert as_json["chunks_to_write"] == 9 and as_json["chunks_to_delete"] == 2 and "chunks_written" not in as_json
    assert "chunks_to_write" not in small.to_dict() and small.to_dict()["chunks_written"] == 11


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
def test_a_link_out_of_the_folder_is_skipped_naming_the_cli_flag(tmp_path, tiny_model_dir):
    docs = _docs(tmp_path / "docs")
    (tmp_path / "secret.txt").write_text("not for the store")
    os.symlink(tmp_path / "secret.txt", docs / "leak.txt")
    result = CliRunner().invoke(cli, [str(docs), "--dry-run", "--model", str(tiny_model_dir),
                                      "--qdrant-path", str(tmp_path / "q")])
    assert result.exit_code == 0, result.output
    assert "--follow-links-outside" in result.output and "follow_links_outside=True" not in result.output


@pytest.mark.slow
def test_printed_duration_is_the_wall_time_of_the_command(tmp_path, tiny_model_dir):
    docs = _docs(tmp_path / "docs")
    args = [str(BIN / "sgpt-ingest"), str(docs), "--model", str(tiny_model_dir), "--qdrant-path", str(tmp_path / "q")]
    env = {**os.environ, "XDG_CACHE_HOME": os.environ["XDG_CACHE_HOME"]}
    subprocess.run(args, capture_output=True, text=True, env=env, timeout=180, check=True)
    t = time.perf_counter()
    again = subprocess.run(args + ["--json"], capture_output=True, text=True, env=env, timeout=180, check=True)
    wall = time.perf_counter() - t
    printed = json.loads(again.stdout)["seconds"]
    # the imports before the run are counted: the printed time is most of the wall time, never more
    # than the resolution allows (the process start and /proc/uptime are read in clock ticks)
    tick = 1 / os.sysconf("SC_CLK_TCK")
    assert 0.6 * wall < printed <= wall + 2 * tick, (printed, wall)
    terminal = subprocess.run(args, capture_output=True, text=True, env=env, timeout=180, check=True)
    assert re.search(r"2 unchanged; 0 chunks written in \d+\.\ds", terminal.stderr), terminal.stderr


def test_an_unreachable_server_is_one_line(tmp_path, tiny_model_dir):
    import socket

    docs = _docs(tmp_path / "docs")
    with socket.socket() as s:  # a free port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = CliRunner().invoke(cli, [str(docs), "--model", str(tiny_model_dir),
                                      "--qdrant-url", f"http://127.0.0.1:{port}"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sgpt-ingest: error: ") and str(port) in lines[0], lines
