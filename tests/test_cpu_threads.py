"""The commands let idle OpenMP threads sleep (OMP_WAIT_POLICY=PASSIVE) unless the user chose."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sgpt_qdrant.ingest import cli as ingest_cli


def _policy_after(env: dict[str, str], before: str = "") -> str:
    code = (f"{before}import os; from sgpt_qdrant.cli_util import sleeping_cpu_threads; sleeping_cpu_threads(); "
            "print(os.environ.get('OMP_WAIT_POLICY', '<unset>'))")
    base = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_passive_unless_the_user_chose():
    assert _policy_after({}) == "PASSIVE"
    assert _policy_after({"OMP_WAIT_POLICY": "ACTIVE"}) == "ACTIVE"


@pytest.mark.slow  # imports torch in a fresh process
def test_no_claim_once_torch_is_loaded():
    # OpenMP has read the variable already: setting it now would only mislead a reader of the environment
    assert _policy_after({}, before="import torch; ") == "<unset>"


def test_sgpt_ingest_sets_it_before_any_work(monkeypatch):
    calls = []
    monkeypatch.setattr(ingest_cli, "sleeping_cpu_threads", lambda: calls.append("threads"))
    monkeypatch.setattr(ingest_cli, "_run_cli", lambda: calls.append("run") or 0)
    monkeypatch.setattr(ingest_cli, "_exit_now", lambda code: calls.append(("exit", code)))
    ingest_cli.main()
    assert calls == ["threads", "run", ("exit", 0)]
