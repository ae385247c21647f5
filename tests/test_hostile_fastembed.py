"""A tampered FastEmbed export is noticed and repaired; exports readable by others; no build
folder left by a killed export (issue 21, 8 and "one line")."""

from __future__ import annotations

import json
import os
import stat

import pytest

from sgpt_qdrant.fastembed_export import export_fastembed
from sgpt_qdrant.fastembed_register import META_FILE, FastEmbedError, register_fastembed

pytest.importorskip("fastembed", reason="needs the fastembed extra: pip install -e '.[fastembed]'")
pytestmark = pytest.mark.usefixtures("isolated_export_cache")


@pytest.fixture(scope="module")
def export(tiny_model_dir, tmp_path_factory):
    return export_fastembed(str(tiny_model_dir), tmp_path_factory.mktemp("hostile-export") / "fe")


def _bytes(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.mark.parametrize("tamper, named", [
    (lambda d: (d / "model.onnx").write_bytes((d / "model.onnx").read_bytes() + b"\0"), "model.onnx"),
    (lambda d: (d / "tokenizer.json").write_text(json.dumps({**json.loads((d / "tokenizer.json").read_text()),
                                                             "normalizer": None})), "tokenizer.json"),
    (lambda d: (d / META_FILE).write_text(json.dumps({**json.loads((d / META_FILE).read_text()), "dim": 7})),
     META_FILE),
], ids=["swapped-onnx", "tokenizer-without-normaliser", "wrong-dim"])
@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
def test_a_tampered_export_is_refused_and_repaired_by_exporting_again(export, tiny_model_dir, tamper, named):
    good = _bytes(export)
    tamper(export)
    with pytest.raises(FastEmbedError, match=rf"{named} changed since the export") as err:
        register_fastembed(export, name="hostile/tampered")
    assert "\n" not in str(err.value)
    assert export_fastembed(str(tiny_model_dir), export) == export
    assert _bytes(export) == good  # the cached build copied over again
    register_fastembed(export, name="hostile/repaired")


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
def test_the_cached_build_itself_is_checked(export, tiny_model_dir):
    cached = export_fastembed(str(tiny_model_dir))
    (cached / "model.onnx").write_bytes(b"not a model")
    rebuilt = export_fastembed(str(tiny_model_dir))
    assert rebuilt == cached and (cached / "model.onnx").read_bytes() == (export / "model.onnx").read_bytes()


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
def test_exports_are_readable_by_others_and_killed_builds_are_cleaned(export, tiny_model_dir, tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(export.stat().st_mode) == 0o777 & ~umask
    cached = export_fastembed(str(tiny_model_dir))
    assert stat.S_IMODE(cached.stat().st_mode) == 0o777 & ~umask
    dead = 2**22 + 12345  # above the default pid_max: no such process
    for folder in (cached.parent / f".tmp-{dead}-abc", tmp_path / f".tmp-{dead}-xyz"):
        folder.mkdir()
        (folder / "model.onnx").write_bytes(b"half")
    (cached / "model.onnx").write_bytes(b"changed")  # forces a build next to the stale one
    export_fastembed(str(tiny_model_dir), tmp_path / "copy")
    assert not (cached.parent / f".tmp-{dead}-abc").exists() and not (tmp_path / f".tmp-{dead}-xyz").exists()
