"""Nothing pruned that could not be read, no silent gaps in the walk, writes checked (issue 21, 1-4, 7, 11)."""

from __future__ import annotations

import errno
import os

import pytest
from click.testing import CliRunner
from qdrant_client import QdrantClient

from sgpt_qdrant.ingest import IngestError, IngestOptions, StoreTarget, ingest_paths
from sgpt_qdrant.ingest import read as read_mod
from sgpt_qdrant.ingest.cli import cli
from sgpt_qdrant.ingest.read import SourceFile, Skipped, read_document, walk
from sgpt_qdrant.ingest.verify import WriteCheckError

COLLECTION = "c"
TEXT = "Some words about the topic, enough for a chunk or two. " * 6


def _run(client, paths, encoder, **options):
    return ingest_paths([str(p) for p in paths], store=client, collection=COLLECTION, encoder=encoder,
                        model="tiny", options=IngestOptions(batch_size=8, **options))


def _docs(client) -> set[str]:
    points, _ = client.scroll(COLLECTION, limit=10_000, with_payload=["doc_id"])
    return {p.payload["doc_id"] for p in points}


def _tree(tmp_path):
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.md").write_text(TEXT + "a")
    (tree / "sub" / "b.md").write_text(TEXT + "b")
    return tree


def _refuse_listing(monkeypatch, folder):
    """``folder`` cannot be listed (what chmod 000 does for a user other than root)."""
    real = os.scandir

    def scandir(path="."):
        if os.path.realpath(path) == os.path.realpath(folder):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(read_mod.os, "scandir", scandir)


@pytest.mark.parametrize("which", ["sub", "root"])
def test_a_folder_that_cannot_be_listed_fails_and_nothing_under_it_is_pruned(tmp_path, tiny_encoder, monkeypatch,
                                                                          which):
    tree = _tree(tmp_path)
    client = QdrantClient(":memory:")
    _run(client, [tree], tiny_encoder)
    assert _docs(client) == {"tree/a.md", "tree/sub/b.md"}
    _refuse_listing(monkeypatch, tree / "sub" if which == "sub" else tree)
    summary = _run(client, [tree], tiny_encoder, prune=True)
    assert summary.failed == 1 and summary.documents_deleted == 0 and summary.chunks_deleted == 0
    assert "cannot list this folder (Permission denied)" in summary.failures[0]
    assert str(tree / "sub" if which == "sub" else tree) in summary.failures[0]
    assert _docs(client) == {"tree/a.md", "tree/sub/b.md"}


@pytest.mark.skipif(os.geteuid() == 0, reason="root lists a chmod 000 folder")
def test_chmod_000_folder_exit_status_1(tmp_path, tiny_model_dir):
    tree = _tree(tmp_path)
    base = [str(tree), "--model", str(tiny_model_dir), "--qdrant-path", str(tmp_path / "q"), "-q"]
    assert CliRunner().invoke(cli, base).exit_code == 0
    (tree / "sub").chmod(0)
    try:
        result = CliRunner().invoke(cli, [*base, "--prune"])
    finally:
        (tree / "sub").chmod(0o755)
    assert result.exit_code == 1 and "cannot list this folder" in result.output


def _chain(top, name: str, depth: int) -> None:
    """``depth`` nested folders ``name`` under ``top``, made relative to each other's descriptor
    (os.makedirs recurses, and the full name may be over PATH_MAX)."""
    fd = os.open(top, os.O_RDONLY)
    try:
        for _ in range(depth):
            os.mkdir(name, dir_fd=fd)
            nxt = os.open(name, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nxt
    finally:
        os.close(fd)


def _remove_chain(top) -> None:
    """Remove a folder chain bottom-up without recursion (shutil.rmtree, and pytest's clean-up of
    old temporary folders, recurse once per level)."""
    fds = [os.open(top, os.O_RDONLY)]
    names = []
    try:
        while True:
            entries = os.listdir(fds[-1])
            subs = [e for e in entries if _is_dir(e, fds[-1])]
            for e in entries:
                if e not in subs:
                    os.unlink(e, dir_fd=fds[-1])
            if not subs:
                break
            names.append(subs[0])
            fds.append(os.open(subs[0], os.O_RDONLY, dir_fd=fds[-1]))
        while names:
            os.close(fds.pop())
            os.rmdir(names.pop(), dir_fd=fds[-1])
    finally:
        for fd in fds:
            os.close(fd)


def _is_dir(name: str, dir_fd: int) -> bool:
    import stat

    return stat.S_ISDIR(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)


def test_a_name_over_path_max_is_a_failure_not_a_silent_gap(tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "top.md").write_text("top")
    _chain(tree, "d" * 250, 20)  # 20 x 250 characters: over PATH_MAX (4096) from the root
    try:
        found = walk([tree])
    finally:
        _remove_chain(tree)
    assert [f.doc_id for f in found.files] == ["tree/top.md"]
    assert len(found.failures) == 1 and "File name too long" in found.failures[0]
    assert not found.covers("tree/" + "/".join(["d" * 250] * 17) + "/x.md")
    assert found.covers("tree/gone.md")


@pytest.mark.slow  # multi-second
def test_a_deep_folder_chain_is_walked_without_recursion(tmp_path):
    tree = tmp_path / "t"
    tree.mkdir()
    (tree / "top.md").write_text("top")
    depth = 1900
    _chain(tree, "a", depth)
    with open(os.path.join(tree, *["a"] * depth, "deep.md"), "w") as f:
        f.write("deep")
    try:
        found = walk([tree])
    finally:
        _remove_chain(tree)
    assert [f.doc_id for f in found.files] == ["t/top.md", "t/" + "a/" * depth + "deep.md"]
    assert not found.failures


def test_an_unreadable_link_target_fails_and_is_kept(tmp_path, tiny_encoder, monkeypatch):
    tree = _tree(tmp_path)
    target = tree / "sub" / "b.md"
    os.symlink(target, tree / "link.md")
    client = QdrantClient(":memory:")
    _run(client, [tree], tiny_encoder)
    assert "tree/link.md" in _docs(client)
    real = os.open

    def refuse(path, flags, *args, **kwargs):
        if os.fspath(path) == str(tree / "link.md"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path, flags, *args, **kwargs)

    monkeypatch.setattr(read_mod.os, "open", refuse)
    summary = _run(client, [tree], tiny_encoder, prune=True)
    assert summary.failed == 1 and summary.skipped == 0 and summary.documents_deleted == 0
    assert "link.md: Permission denied" in summary.failures[0]
    assert "tree/link.md" in _docs(client)


def test_a_link_swapped_after_it_was_found_is_checked_where_it_was_opened(tmp_path):
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("API_KEY=hunter2")
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "inside.md").write_text("inside")
    os.symlink(tree / "inside.md", tree / "flip.md")
    (source,) = [f for f in walk([tree]).files if f.doc_id == "tree/flip.md"]
    real = os.open

    def swap_then_open(path, flags, *args, **kwargs):  # the race: the link changes right before the open
        if os.fspath(path) == str(tree / "flip.md"):
            os.unlink(path)
            os.symlink(secret, path)
        return real(path, flags, *args, **kwargs)

    read_mod.os.open = swap_then_open
    try:
        with pytest.raises(Skipped, match="outside"):
            read_document(source)
    finally:
        read_mod.os.open = real


def test_empty_path_and_bare_string_are_refused(tmp_path, tiny_encoder, tiny_model_dir):
    client = QdrantClient(":memory:")
    with pytest.raises(IngestError, match="not one path"):
        ingest_paths(str(tmp_path), store=client, encoder=tiny_encoder, model="tiny")
    with pytest.raises(IngestError, match="empty path"):
        ingest_paths([""], store=client, encoder=tiny_encoder, model="tiny")
    result = CliRunner().invoke(cli, ["", "--prune", "--model", str(tiny_model_dir), "--qdrant-path",
                                      str(tmp_path / "q")])
    assert result.exit_code == 2 and "empty path" in result.output
    assert not (tmp_path / "q").exists()


@pytest.mark.slow  # multi-second
def test_a_server_that_drops_writes_is_noticed(tmp_path, tiny_encoder, standin, tiny_model_dir):
    tree = _tree(tmp_path)
    standin.drop_writes = True
    with pytest.raises(WriteCheckError, match="acknowledged the writes but does not hold them"):
        ingest_paths([str(tree)], store=StoreTarget(url=standin.url), collection=COLLECTION, encoder=tiny_encoder,
                     model="tiny")
    result = CliRunner().invoke(cli, [str(tree), "--qdrant-url", standin.url, "--model", str(tiny_model_dir),
                                      "--collection", "d", "-q"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "does not hold them" in lines[0]
    standin.drop_writes = False  # a healthy server: the same check passes
    summary = ingest_paths([str(tree)], store=StoreTarget(url=standin.url), collection=COLLECTION,
                           encoder=tiny_encoder, model="tiny")
    assert summary.new == 2 and summary.failed == 0


@pytest.mark.parametrize("options, match", [
    ({"batch_size": 2.5}, "batch-size must be a whole number"),
    ({"in_flight": "4"}, "in-flight must be a whole number"),
])
def test_options_of_the_wrong_type_are_one_line(options, match):
    with pytest.raises(IngestError, match=match):
        IngestOptions(**options)


def test_options_are_an_ingest_options_value(tmp_path, tiny_encoder):
    tree = _tree(tmp_path)
    summary = ingest_paths([str(tree)], store=QdrantClient(":memory:"), encoder=tiny_encoder, model="tiny",
                           options=IngestOptions(dry_run=True))
    assert summary.dry_run and summary.documents["new"] == ["tree/a.md", "tree/sub/b.md"]
    for wrong in ({"dry_run": True}, 3):  # a dict of its fields is refused too: the caller builds the value
        with pytest.raises(IngestError, match="options must be an IngestOptions"):
            ingest_paths([str(tree)], store=QdrantClient(":memory:"), encoder=tiny_encoder, options=wrong)


@pytest.mark.slow  # multi-second
def test_the_store_folder_inside_the_ingested_folder_is_not_ingested(tmp_path, tiny_model_dir, monkeypatch):
    tree = _tree(tmp_path)
    monkeypatch.chdir(tree)
    result = CliRunner().invoke(cli, [".", "--model", str(tiny_model_dir), "--qdrant-path", "store", "--json"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, [".", "--model", str(tiny_model_dir), "--qdrant-path", "store", "--json"])
    assert result.exit_code == 0, result.output
    import json

    summary = json.loads(result.output.splitlines()[-1])
    assert summary["files_seen"] == 2 and summary["unchanged"] == 2


def test_ctrl_c_during_start_up_is_one_line_and_exit_130(monkeypatch, capsys, tmp_path):
    import sys
    import types

    from sgpt_qdrant.ingest import cli as cli_mod

    class Interrupting(types.ModuleType):
        def __getattr__(self, name):
            raise KeyboardInterrupt

    monkeypatch.setitem(sys.modules, "sgpt_qdrant.ingest.pipeline", Interrupting("pipeline"))
    assert cli_mod.run([str(tmp_path)]) == 130
    monkeypatch.undo()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_mod, "run", interrupted)
    monkeypatch.setattr(sys, "argv", ["sgpt-ingest", str(tmp_path)])
    monkeypatch.setattr(cli_mod, "_exit_now", sys.exit)  # not os._exit: that would end pytest (without Ray)
    with pytest.raises(SystemExit) as exit_:
        cli_mod.main()
    assert exit_.value.code == 130
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err == ["sgpt-ingest: interrupted before any work; nothing was written"] * 2


def test_json_output_is_the_json_alone_whatever_prints_during_the_run(tmp_path, tiny_model_dir, monkeypatch):
    import json

    from sgpt_qdrant.ingest import pipeline

    real = pipeline.ingest_paths

    def chatty(*args, **kwargs):
        print("(raylet) A worker died or was killed while executing a task")  # as Ray's log monitor does
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "ingest_paths", chatty)
    tree = _tree(tmp_path)
    result = CliRunner().invoke(cli, [str(tree), "--model", str(tiny_model_dir), "--qdrant-path",
                                      str(tmp_path / "q"), "--json", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["files_seen"] == 2
    assert "(raylet) A worker died" in result.stderr
