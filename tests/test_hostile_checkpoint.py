"""Every numeric field checked once in the reader; no module-reference bombs (issue 21, 9 and "one line")."""

from __future__ import annotations

import json
import shutil

import pytest

from sgpt_qdrant.checkpoint import MAX_MODULES, CheckpointError, load, peek


def _copy(tiny_model_dir, tmp_path):
    return shutil.copytree(tiny_model_dir, tmp_path / "m")


def _edit(path, **changes):
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def _modules(d):
    return json.loads((d / "modules.json").read_text())


@pytest.mark.parametrize("value", [-5, 0, 2.5, "75", True])
def test_max_seq_length_must_be_a_positive_integer_for_every_reader(tiny_model_dir, tmp_path, value):
    d = _copy(tiny_model_dir, tmp_path)
    _edit(d / "sentence_bert_config.json", max_seq_length=value)
    for reader in (load, peek):
        with pytest.raises(CheckpointError, match=r"sentence_bert_config\.json: field max_seq_length .* must be a "
                                                  "positive integer") as err:
            reader(str(d))
        assert "\n" not in str(err.value)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 0.0, -1e-5])
def test_layer_norm_epsilon_must_be_positive_and_finite(tiny_model_dir, tmp_path, value):
    d = _copy(tiny_model_dir, tmp_path)
    _edit(d / "config.json", layer_norm_epsilon=value)  # json.dumps writes NaN / Infinity, json.loads reads them
    with pytest.raises(CheckpointError, match=r"config\.json: field layer_norm_epsilon .* positive finite"):
        load(str(d))


def test_deeply_nested_config_is_one_line(tiny_model_dir, tmp_path):
    d = _copy(tiny_model_dir, tmp_path)
    (d / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    for reader in (load, peek):
        with pytest.raises(CheckpointError, match=r"config\.json: not a config file \(JSON nested too deeply\)"):
            reader(str(d))


def test_a_dense_folder_listed_many_times_is_refused_at_once(tiny_model_dir, tmp_path):
    d = _copy(tiny_model_dir, tmp_path)
    modules = _modules(d)
    dense = next(m for m in modules if m["type"].endswith("Dense"))
    bomb = [m for m in modules if not m["type"].endswith("Dense")] + [
        {**dense, "idx": 100 + i, "name": str(100 + i)} for i in range(4000)]
    (d / "modules.json").write_text(json.dumps(bomb))
    with pytest.raises(CheckpointError, match=rf"4002 modules; an SGPT checkpoint has at most {MAX_MODULES}"):
        load(str(d))  # refused from the count alone: no Dense folder is read 4,000 times
    twice = modules[:2] + [{**modules[1], "idx": 50, "name": "50"}] + modules[2:]
    (d / "modules.json").write_text(json.dumps(twice))
    for reader in (load, peek):
        with pytest.raises(CheckpointError, match=rf"module path '{modules[1]['path']}' is listed more than once"):
            reader(str(d))
