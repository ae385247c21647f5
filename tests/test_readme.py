"""Every command and Python block of README.md, run as written, in README order, against the random
stand-in model (``SGPT_MODEL``) in a temporary folder holding a copy of ``examples/``.

Not run: ``pip install`` lines (their extras are checked against pyproject.toml instead) and blocks
preceded by ``<!-- not run by tests/test_readme.py: REASON -->`` (a Hub download, the test suite
itself); the fast test below fails when a block is neither runnable nor marked with a reason.
The training blocks' data files (AllNLI.tsv.gz, stsbenchmark.tsv.gz) are small generated ones.
"""

from __future__ import annotations

import gzip
import os
import random
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"(?:<!-- not run by tests/test_readme\.py: (?P<reason>[^>]*?) -->\n)?"
                   r"```(?P<lang>\w*)\n(?P<body>.*?)```", re.S)
#: ``[python -m] pip install ["torch==X"] ARGS [&& COMMAND]``: the install is checked, COMMAND is run.
PIP = re.compile(r'^(?:python -m )?pip install (?:"torch==[\d.]+" )?(?P<args>.+?)(?: && (?P<then>.+))?$')


def blocks(text: str | None = None) -> list[tuple[int, str, str, str | None]]:
    """(line, language, body, reason-not-run) of every fenced block."""
    text = README.read_text(encoding="utf-8") if text is None else text
    return [(text.count("\n", 0, m.start("body")), m["lang"], m["body"], m["reason"]) for m in FENCE.finditer(text)]


def commands(body: str) -> list[str]:
    """The block's commands: continuation lines joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n\s*", "", body)
    return [line for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def runnable() -> list[tuple[int, str, str]]:
    return [(line, lang, body) for line, lang, body, reason in blocks() if lang in ("bash", "python") and not reason]


def test_every_block_is_run_or_says_why_not():
    found = blocks()
    assert any(lang == "bash" for _, lang, _, _ in found) and any(lang == "python" for _, lang, _, _ in found)
    for line, lang, body, reason in found:
        assert lang, f"README.md:{line}: a fenced block without a language"
        if reason is not None:
            assert reason.strip(), f"README.md:{line}: a skipped block must say why"
            assert lang in ("bash", "python"), f"README.md:{line}: only command blocks are marked"
    assert len(runnable()) >= 10


def test_pip_lines_name_extras_that_exist():
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    seen = set()
    for line, lang, body, _ in blocks():
        for command in commands(body) if lang == "bash" else []:
            match = PIP.match(command.strip())
            if match:
                assert match["args"].startswith(("-e .", '-e ".[')), f"README.md:{line}: {command}"
                for group in re.findall(r"\[([\w,-]+)\]", match["args"]):
                    seen.update(group.split(","))
    assert seen and seen <= extras, seen - extras
    assert "standin" in seen


def test_links_to_local_files_resolve():
    text = README.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(((?!https?:)[^)#]+)(?:#[^)]*)?\)", text):
        assert (ROOT / target).exists(), target


def test_no_block_writes_outside_what_gitignore_keeps_out():
    """What the README's commands write in the checkout is ignored by git."""
    ignored = (ROOT / ".gitignore").read_text().split()
    for name in ("qdrant_storage/", "tiny-model/", "sgpt-fastembed/", "tiny-trained/"):
        assert name in ignored, name


# -- running the blocks ---------------------------------------------------------------------------


def _write_training_files(folder: Path) -> None:
    """Tiny AllNLI.tsv.gz / stsbenchmark.tsv.gz in the files' real layouts (the README downloads them)."""
    rng = random.Random(0)
    words = "car dog house road child shop sea stone film tree river cloud bread lamp bird".split()
    rows = ["split\tdataset\tsentence1\tsentence2\tlabel"]
    for i in range(240):
        a, b, c = rng.sample(words, 3)
        s = f"the {a} near the {b} number {i}"
        rows += [f"train\tSNLI\t{s}\tthe {a} by a {b} {i}\tentailment",
                 f"train\tSNLI\t{s}\ta {c} far away {i}\tcontradiction"]
    with gzip.open(folder / "AllNLI.tsv.gz", "wt", encoding="utf-8") as f:
        f.write("\n".join(rows) + "\n")
    sts = ["split\tgenre\tdataset\tyear\tsid\tscore\tsentence1\tsentence2"]
    for split in ("dev", "test"):
        for i in range(40):
            a, b = rng.sample(words, 2)
            sts.append(f"{split}\tmain-captions\tMSRvid\t2012\t{i:04d}\t{i % 6}\ta {a} and a {b}\t"
                       f"a {a if i % 2 else b} alone")
    with gzip.open(folder / "stsbenchmark.tsv.gz", "wt", encoding="utf-8") as f:
        f.write("\n".join(sts) + "\n")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("readme")
    shutil.copytree(ROOT / "examples", root / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "docs", root / "docs")  # the quick start ingests docs/
    _write_training_files(root)
    cache = tmp_path_factory.mktemp("readme-cache")
    env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "HOME": str(cache), "XDG_CACHE_HOME": str(cache), "SGPT_CACHE_DIR": str(cache / "sgpt"),
           "SGPT_MODEL": str(tiny_model_dir), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return root, env


def _run(args: list[str], root: Path, env: dict, where: str) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{where} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr, f"{where}\n{result.stderr}"
    return result


@pytest.mark.slow
@pytest.mark.parametrize("line, lang, body", runnable(), ids=[f"line{b[0]}-{b[1]}" for b in runnable()])
def test_readme_block_runs_as_written(line, lang, body, workdir):
    root, env = workdir
    where = f"README.md:{line}"
    if lang == "python":
        result = _run([sys.executable, "-c", body], root, env, where)
        if "print(" in body:
            assert result.stdout.strip(), where
        return
    for command in commands(body):
        pip = PIP.match(command.strip())
        if pip:  # the install is checked by test_pip_lines_name_extras_that_exist; what follows it runs
            if pip["then"]:
                _run(["bash", "-e", "-o", "pipefail", "-c", pip["then"]], root, env, f"{where}: {pip['then']}")
            continue
        if command.startswith("export "):
            name, _, value = command[len("export "):].partition("=")
            env[name] = value  # later blocks see it, as in the reader's shell
            continue
        _run(["bash", "-e", "-o", "pipefail", "-c", command], root, env, f"{where}: {command}")


def test_layout_names_every_module():
    """The Layout section is the map of the code: every module of the package is on it."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    layout = text[text.index("## Layout"):text.index("## Tests")]
    root = Path(__file__).resolve().parents[1]
    modules = [p for folder in ("sgpt_qdrant", "ingest") for p in (root / folder).rglob("*.py")
               if p.name not in ("__init__.py", "__main__.py") and "__pycache__" not in p.parts]
    assert len(modules) > 40
    missing = sorted(str(p.relative_to(root)) for p in modules if p.name not in layout)
    assert not missing, f"README Layout does not name: {', '.join(missing)}"
