"""Regenerate docs/dashboard-usage.png: the dashboard's browser test, on SQLite, seeded with
30 days of usage of five users and a quota rejection, screenshots the page into docs/.

    uv run python scripts/dashboard_screenshot.py

Needs Debian's chromium (/usr/bin/chromium).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST = "tests/monitoring/test_dashboard_usage.py"


def main() -> int:
    env = {**os.environ, "VEKTOR_ARTIFACTS": str(ROOT / "docs")}
    command = [sys.executable, "-m", "pytest", TEST, "-q", "-k", "browser and sqlite"]
    return subprocess.run(command, cwd=ROOT, env=env, timeout=600, check=False).returncode  # noqa: S603 (fixed arguments)


if __name__ == "__main__":
    sys.exit(main())
