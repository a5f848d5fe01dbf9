"""One job per module: a module of reference/ or conformance/ over 450 lines says on its first line why it is not
split (``# long module: <reason>``), so a long module is a decision, not drift."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 450
#: the first line of a long module: the reason a split would hurt
REASON = re.compile(r"^# long module: \S.{15,}")


def long_modules_without_reason(root: Path = ROOT) -> list[str]:
    out = []
    for folder in ("reference", "conformance"):
        for path in sorted((root / folder).rglob("*.py")):
            lines = path.read_text(encoding="utf-8").splitlines()
            if len(lines) > MAX_LINES and not REASON.match(lines[0]):
                out.append(f"{path.relative_to(root)} ({len(lines)} lines)")
    return out


def test_long_modules_give_their_reason():
    bad = long_modules_without_reason()
    assert not bad, (f"modules over {MAX_LINES} lines without '# long module: <reason>' as their first line: "
                     f"{', '.join(bad)}; split them by job, or state on the first line why a split would hurt.")


def test_the_size_check_can_fail(tmp_path):
    """A 451-line module is flagged; the same with a reason on its first line, or at 450 lines, is not."""
    (tmp_path / "reference").mkdir()
    (tmp_path / "conformance").mkdir()
    (tmp_path / "reference" / "long.py").write_text("x = 1\n" * (MAX_LINES + 1), encoding="utf-8")
    (tmp_path / "conformance" / "fits.py").write_text("x = 1\n" * MAX_LINES, encoding="utf-8")
    (tmp_path / "conformance" / "argued.py").write_text(
        "# long module: one state machine whose branches read each other's fields\n" + "x = 1\n" * MAX_LINES,
        encoding="utf-8")
    assert long_modules_without_reason(tmp_path) == [f"{Path('reference', 'long.py')} ({MAX_LINES + 1} lines)"]
