"""Thread defaults that degrade gracefully beside other work."""

from __future__ import annotations

import os

from advgen import threads


def test_default_training_threads_leave_busy_cores_alone(monkeypatch):
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    monkeypatch.setattr(threads, "other_runnable_processes", lambda: 0)
    assert threads.training_threads(0) == (2, None)
    monkeypatch.setattr(threads, "other_runnable_processes", lambda: 1)
    n, note = threads.training_threads(0)
    assert n == 1 and "1 other process is running" in note and "--threads" in note
    monkeypatch.setattr(threads, "other_runnable_processes", lambda: 7)
    assert threads.training_threads(0)[0] == 1  # never fewer than one
    assert threads.training_threads(2) == (2, None)  # the user's choice is kept


def test_other_runnable_processes_reads_the_kernel_count():
    busy = threads.other_runnable_processes()
    assert isinstance(busy, int) and busy >= 0


def test_openmp_threads_spin_on_a_quiet_machine_and_sleep_beside_others(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.setattr(threads, "other_runnable_processes", lambda: 0)
    assert threads.choose_wait_policy() == "ACTIVE" and os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
    monkeypatch.delenv("OMP_WAIT_POLICY")
    monkeypatch.setattr(threads, "other_runnable_processes", lambda: 1)
    assert threads.choose_wait_policy() == "PASSIVE" and os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "passive")  # the user's choice is kept
    monkeypatch.setattr(threads, "other_runnable_processes", lambda: 0)
    assert threads.choose_wait_policy() is None and os.environ["OMP_WAIT_POLICY"] == "passive"


def test_the_command_line_sets_the_wait_policy_before_torch_loads(tmp_path):
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    code = (
        "import sys, os\nsys.argv = ['advgen', '--version']\nfrom advgen import cli\n"
        "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules\nprint(os.environ.get('OMP_WAIT_POLICY'))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] in ("ACTIVE", "PASSIVE")
