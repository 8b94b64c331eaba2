"""Development entry point: `python main.py` (reload) or `python main.py prod` (Gunicorn)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from vektor.cli import main

if __name__ == "__main__":
    if sys.argv[1:2] == ["prod"]:
        raise SystemExit(main(["serve", "--prod", "--host", "0.0.0.0", *sys.argv[2:]]))  # noqa: S104
    raise SystemExit(main(["serve", "--reload", *sys.argv[1:]]))
