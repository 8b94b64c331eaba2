"""Create an admin user: `startup.py --user --email E --username U --password P`.

Same as `vektor create-user --admin`.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from vektor.cli import main


def run(argv: list[str]) -> int:
    """Parse the seed's flags and create the admin."""
    parser = argparse.ArgumentParser(description="Create the first admin user")
    parser.add_argument("--user", action="store_true", required=True, help="create a user")
    parser.add_argument("--email", required=True)
    parser.add_argument("--username", required=True)
    parser.add_argument("--password", required=True)
    args = parser.parse_args(argv)
    return main(
        [
            "create-user",
            "--email",
            args.email,
            "--username",
            args.username,
            "--password",
            args.password,
            "--admin",
        ]
    )


if __name__ == "__main__":
    raise SystemExit(run(sys.argv[1:]))
