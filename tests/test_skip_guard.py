"""The no-silent-skips rule (tests/skip_guard.py): a skip that the allowlist does not name fails the run."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]

SUITE = '''
import pytest

def test_passes():
    assert True

def test_skips():
    pytest.skip("no frobnicator here")

@pytest.mark.xfail(reason="known bug")
def test_xfails():
    assert False
'''


def run_suite(tmp_path, allowlist: str, module: str = SUITE):
    (tmp_path / "test_suite.py").write_text(module, encoding="utf-8")
    (tmp_path / "allow.txt").write_text(allowlist, encoding="utf-8")
    env = {**os.environ, "FUNASR_NANO_SKIP_ALLOWLIST": str(tmp_path / "allow.txt"),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.skip_guard", "-p", "no:cacheprovider",
                           "--rootdir", str(tmp_path), "-c", os.devnull, str(tmp_path / "test_suite.py")],
                          capture_output=True, text=True, env=env, timeout=120)


def test_an_unlisted_skip_or_xfail_fails_the_run(tmp_path):
    proc = run_suite(tmp_path, "# nothing allowed\n")
    assert proc.returncode == 1, proc.stdout
    assert "NOT ALLOWED  test_suite.py::test_skips  (skipped: no frobnicator here)" in proc.stdout
    assert "NOT ALLOWED  test_suite.py::test_xfails  (xfailed: known bug)" in proc.stdout
    assert "2 test(s) skipped or xfailed" in proc.stdout


def test_listed_skips_pass_and_are_still_reported(tmp_path):
    proc = run_suite(tmp_path, "test_suite.py::test_skips  # no frobnicator on CI\ntest_suite.py::test_xfails\n")
    assert proc.returncode == 0, proc.stdout
    assert "allowed  test_suite.py::test_skips" in proc.stdout


def test_a_module_skipped_at_collection_fails_the_run(tmp_path):
    proc = run_suite(tmp_path, "", 'import pytest\npytest.importorskip("no_such_module_here")\n'
                                   'def test_never_runs():\n    pass\n')
    assert proc.returncode == 1, proc.stdout
    assert "NOT ALLOWED  test_suite.py" in proc.stdout and "no_such_module_here" in proc.stdout
