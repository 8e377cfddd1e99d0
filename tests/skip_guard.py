"""A pytest plugin: no silent skips. A skipped or xfailed test (or a module skipped at collection, e.g. by
``pytest.importorskip``) fails the run unless the allowlist names it: one reviewed line each,
``<node id or prefix>  # why``, in ``tests/skip_allowlist.txt`` (or the file ``$FUNASR_NANO_SKIP_ALLOWLIST``
names). The terminal summary lists every skip and whether it was allowed.

Registered by tests/conftest.py; ``python -m pytest -p tests.skip_guard`` loads it elsewhere.
"""

from __future__ import annotations

import os
import pathlib

ALLOWLIST = pathlib.Path(os.environ.get("FUNASR_NANO_SKIP_ALLOWLIST",
                                        pathlib.Path(__file__).resolve().parent / "skip_allowlist.txt"))
_skipped: list[tuple[str, str]] = []


def _allowed_skips() -> list[str]:
    if not ALLOWLIST.exists():
        return []
    lines = (line.split("#", 1)[0].strip() for line in ALLOWLIST.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line]


def _reason(report) -> str:
    text = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    return text.removeprefix("Skipped: ")


def pytest_collectreport(report):
    if report.skipped:  # a whole module skipped at collection (pytest.importorskip, pytest.skip(allow_module_level))
        _skipped.append((report.nodeid, f"skipped: {_reason(report)}"))


def pytest_runtest_logreport(report):
    if report.skipped:
        kind = "xfailed" if hasattr(report, "wasxfail") else "skipped"
        reason = report.wasxfail if kind == "xfailed" else _reason(report)
        _skipped.append((report.nodeid, f"{kind}: {reason}"))


def _unlisted() -> list[tuple[str, str]]:
    allowed = _allowed_skips()
    return [(node, why) for node, why in _skipped if not any(node.startswith(prefix) for prefix in allowed)]


def pytest_terminal_summary(terminalreporter):
    if not _skipped:
        return
    unlisted = {node for node, _ in _unlisted()}
    terminalreporter.section(f"skips ({ALLOWLIST.name})")
    for node, why in _skipped:
        terminalreporter.line(f"{'NOT ALLOWED' if node in unlisted else 'allowed'}  {node}  ({why})")


def pytest_sessionfinish(session, exitstatus):
    unlisted = _unlisted()
    if unlisted and exitstatus in (0, 5):  # 5: nothing ran, every module skipped
        session.exitstatus = 1
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"error: {len(unlisted)} test(s) skipped or xfailed that {ALLOWLIST} does not list "
                                "(an unexpected skip is a failure)", red=True)
