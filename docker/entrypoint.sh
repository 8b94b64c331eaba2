#!/bin/sh
# Vektor's container entry point (works outside a container too).
#   entrypoint.sh migrate        apply the database migrations, then exit
#   entrypoint.sh serve [ARGS]   serve (Gunicorn with WEB_CONCURRENCY Uvicorn workers)
#   entrypoint.sh ARGS…          any `vektor` subcommand
set -eu
VEKTOR="${VEKTOR_BIN:-vektor}"
case "${1:-serve}" in
  migrate)
    exec "$VEKTOR" init-db
    ;;
  serve)
    [ "$#" -gt 0 ] && shift
    # Migrations run once, in the `migrate` service; replicas must not race to apply them.
    export AUTO_MIGRATE="${AUTO_MIGRATE:-false}"
    exec "$VEKTOR" serve --prod --host "${HOST:-0.0.0.0}" --port "${PORT:-8000}" \
      --workers "${WEB_CONCURRENCY:-2}" "$@"
    ;;
  *)
    exec "$VEKTOR" "$@"
    ;;
esac
