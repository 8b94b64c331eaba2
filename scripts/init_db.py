"""Apply database migrations (same as `vektor init-db`)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from vektor.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["init-db", *sys.argv[1:]]))
