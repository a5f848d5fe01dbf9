"""``--ncspec-progress``: claim-by-claim progress with elapsed time on stderr."""
from __future__ import annotations

import sys
import time

import pytest

from .results import USER_PROPERTY


class Progress:
    """Claim-by-claim progress on stderr: a rich progress bar on a terminal, one plain line per test
    when stderr is not a terminal (CI logs). Drawn only between tests, when pytest's output capture
    is suspended (no refresh thread writes into a test's captured output)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.started = time.time()
        self.total, self.done, self.bar, self.task, self.claims = 0, 0, None, None, {}

    def pytest_collection_finish(self, session):
        self.total = len(session.items)
        self.claims = {it.nodeid: m.args[0] for it in session.items if (m := it.get_closest_marker("claim"))}
        self._start_bar()

    def _start_bar(self):
        if self.tty and self.total and self.bar is None:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), console=Console(file=self.stream), auto_refresh=False,
                                transient=True)
            self.bar.start()
            self.task = self.bar.add_task("ncspec check", total=self.total)

    @staticmethod
    def _label(item_or_nodeid, claim=None) -> str:
        name = item_or_nodeid.split("::")[-1]
        return f"{claim} {name}" if claim else name

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node, ids):
        """Under pytest-xdist the controller collects nothing itself: every worker reports the same ids."""
        if not self.total and ids:
            self.total = len(ids)
            self._start_bar()

    def pytest_runtest_logstart(self, nodeid, location):
        if self.bar is not None:
            self.bar.update(self.task, description=f"running {self._label(nodeid, self.claims.get(nodeid))}")
            self.bar.refresh()

    def pytest_runtest_logreport(self, report):
        if not (report.when == "call" or (report.when == "setup" and report.outcome != "passed")):
            return
        self.done += 1
        claim = self.claims.get(report.nodeid) or next(
            (v["claim"] for k, v in report.user_properties if k == USER_PROPERTY), None)
        elapsed = time.time() - self.started
        outcome = "xfailed" if hasattr(report, "wasxfail") else report.outcome
        line = (f"[{self.done:>{len(str(self.total))}}/{self.total}] {outcome:<7} "
                f"{self._label(report.nodeid, claim)} ({report.duration:.1f} s; {elapsed:.0f} s elapsed)")
        if self.bar is not None:
            self.bar.console.print(line, highlight=False, markup=False)
            self.bar.advance(self.task)
            self.bar.refresh()
        else:
            print(line, file=self.stream, flush=True)

    def pytest_sessionfinish(self, session):
        if self.bar is not None:
            self.bar.stop()
