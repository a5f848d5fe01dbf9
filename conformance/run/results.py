"""Per-test outcomes of the claim tests, collected for the report (also across pytest-xdist workers), and the
reproduction of every failure."""
from __future__ import annotations

import re
import time

import pytest

from . import coverage
from .coverage import TALLY
from .failures import adapter_crash, failure_message, first_line
from .report import build_report, declared_methods, write_json
from .report_doc import write_report
from .session import adapter_spec, is_worker, profile_name, run_adapter, tier

USER_PROPERTY = "ncspec"


class Collector:
    """Collects per-test outcomes of claim tests for the report."""

    def __init__(self, config):
        self.config = config
        self.tests: list[dict] = []
        self.started = time.time()

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item):
        coverage.reset()        # each test's builds and steps, its fixtures' set-up included

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        rep = outcome.get_result()
        marker = item.get_closest_marker("claim")
        if marker is None:
            return
        if rep.when == "call" or (rep.when == "setup" and rep.outcome != "passed"):
            rec = getattr(item, "_ncspec_record", None)
            entry = getattr(item, "_ncspec_xfail", None)
            outcome, reason = rep.outcome, ""
            if rep.skipped and hasattr(rep, "wasxfail"):
                outcome = "xfailed"
                got = call.excinfo.exconly().splitlines()[0][:200] if call.excinfo else ""
                reason = (entry.reason if entry else rep.wasxfail) + (f" (failed as expected: {got})" if got else "")
            elif rep.skipped and isinstance(rep.longrepr, tuple):
                # the first line: Hypothesis adds its example to a skip raised inside an @example
                reason = str(rep.longrepr[2]).strip().splitlines()[0] if str(rep.longrepr[2]).strip() else ""
            elif rep.failed and entry is not None and rep.when == "call" and call.excinfo is None:
                # pytest's strict XPASS: outcome "failed", longrepr "[XPASS(strict)] …", no wasxfail
                reason = (f"expected failure passed (strict): remove {entry.text!r} from the expected-failures "
                          f"file ({entry.path}, line {entry.line})")
            elif rep.failed:
                crash = adapter_crash(call.excinfo.value) if call.excinfo is not None else None
                if crash is not None:
                    outcome, reason = "errored", crash
                else:
                    reason = failure_message(call.excinfo.value) if call.excinfo is not None else first_line(rep)
            entry = dict(claim=marker.args[0], test=item.nodeid, outcome=outcome, duration=rep.duration,
                         reason=reason, rows=list(rec.rows.values()) if rec else [],
                         traces=list(rec.traces) if rec else [], builds=TALLY.builds, steps=TALLY.steps,
                         methods=dict(TALLY.methods))
            if rep.failed:
                entry["reproduce"] = self.reproduction(item, rep, call)
            # Carried on the report, so that it reaches the controller when pytest-xdist runs the tests
            # in worker processes (``ncspec check --jobs``); collected in pytest_runtest_logreport.
            rep.user_properties.append((USER_PROPERTY, entry))

    def pytest_runtest_logreport(self, report):
        for key, value in report.user_properties:
            if key == USER_PROPERTY and not is_worker(self.config):
                self.tests.append(value)

    def reproduction(self, item, rep, call) -> dict:
        """What reruns this failure: the failing example and ``@reproduce_failure`` blob (PEP 678 notes
        Hypothesis attaches to the exception), Hypothesis' own report section, the seed, the command."""
        notes = []
        if call.excinfo is not None:
            stack = [call.excinfo.value]
            while stack:
                e = stack.pop()
                notes += [str(n) for n in getattr(e, "__notes__", ()) if str(n) not in notes]
                inner = getattr(e, "exceptions", None)
                if isinstance(inner, tuple):
                    stack += [x for x in inner if isinstance(x, BaseException)]
        notes += [text for name, text in rep.sections if name == "Hypothesis" and text not in notes]
        blob = next((m.group(0) for n in notes for m in [re.search(r"@reproduce_failure\([^)]*\)", n)] if m), None)
        example = "\n".join(n.strip() for n in notes if "@reproduce_failure" not in n).strip()
        seed = getattr(self.config, "_ncspec_seed", None)
        name = item.nodeid.split("::")[-1].split("[")[0]
        command = f"ncspec check --adapter {adapter_spec(self.config)} -k {name}"
        if seed is not None:
            command += f" --seed {seed}"
        elif profile_name(self.config) != "ci":
            command += f" --profile {profile_name(self.config)}"
        return dict(example=example, blob=blob, seed=seed, profile=profile_name(self.config), command=command)

    def pytest_terminal_summary(self, terminalreporter):
        failed = [t for t in self.tests if t.get("reproduce")]
        if not failed:
            return
        terminalreporter.section("ncspec: reproduce the failures")
        for t in failed:
            r = t["reproduce"]
            terminalreporter.write_line(f"{t['test']}: {r['command']}")
            if r["blob"]:
                terminalreporter.write_line(f"    or decorate the test with {r['blob']}")

    def declared(self) -> list[str]:
        """The methods the adapter under test declares (its capabilities), for the report's per-method listing."""
        try:
            return declared_methods(run_adapter(adapter_spec(self.config)).capabilities)
        except (LookupError, TypeError, ValueError, AttributeError):
            return []          # a malformed adapter: the run has reported it already

    def pytest_sessionfinish(self, session, exitstatus):
        if is_worker(self.config):
            return  # an xdist worker: its rows went to the controller, which writes the report
        if exitstatus == pytest.ExitCode.USAGE_ERROR:
            return  # e.g. a bad expected-failures file: no tests ran, an all-"not_run" report would mislead
        json_path = self.config.getoption("ncspec_json", default=None)
        doc_path = self.config.getoption("ncspec_report", default=None)
        if json_path or doc_path:
            profile = self.config.getoption("hypothesis_profile", default=None)   # hypothesis' own option
            report = build_report(self.tests, adapter_spec(self.config), time.time() - self.started,
                                  expected_failures=[e.to_dict() for e in self.config._ncspec_xfail],
                                  seed=getattr(self.config, "_ncspec_seed", None), profile=profile,
                                  tier=tier(self.config), declared=self.declared())
            if json_path:
                write_json(report, json_path)
            if doc_path:
                write_report(report, doc_path)
