"""`python -m vektor` is the `vektor` command."""

from vektor.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
