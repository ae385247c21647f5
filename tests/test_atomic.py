"""Atomic publish and the one cache folder (sgpt_qdrant.atomic, sgpt_qdrant.user_cache)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sgpt_qdrant import atomic
from sgpt_qdrant.user_cache import cache_root


def test_write_text_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "cache.json"
    target.write_text("old")
    atomic.write_text(target, "new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["cache.json"]


def test_publish_folder_replaces_an_existing_one(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "stale.txt").write_text("old")
    with atomic.staging_folder(tmp_path) as staged:
        (staged / "model.onnx").write_text("new")
        atomic.publish_folder(staged, target)
    assert sorted(p.name for p in target.iterdir()) == ["model.onnx"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging or .old folder left


def test_first_writer_wins_without_replace(tmp_path):
    target = tmp_path / "key"
    for text in ("first", "second"):
        with atomic.staging_folder(tmp_path) as staged:
            (staged / "model.onnx").write_text(text)
            atomic.publish_folder(staged, target, replace=False)
    assert (target / "model.onnx").read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["key"]


def test_a_failed_build_publishes_nothing(tmp_path):
    target = tmp_path / "key"
    with pytest.raises(RuntimeError), atomic.staging_folder(tmp_path) as staged:
        (staged / "half.onnx").write_text("x")
        raise RuntimeError("crash mid-build")
    assert list(tmp_path.iterdir()) == []
    assert not target.exists()


def test_a_fixed_staging_name_is_cleared_first(tmp_path):
    (tmp_path / ".staging").mkdir()
    (tmp_path / ".staging" / "left-by-a-crash").write_text("x")
    with atomic.staging_folder(tmp_path, ".staging") as staged:
        assert staged == tmp_path / ".staging" and list(staged.iterdir()) == []


def test_cache_root_order(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SGPT_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert cache_root() == tmp_path / "home" / ".cache" / "sgpt_qdrant"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "sgpt_qdrant"
    monkeypatch.setenv("SGPT_CACHE_DIR", str(tmp_path / "mine"))
    assert cache_root() == Path(tmp_path / "mine")
