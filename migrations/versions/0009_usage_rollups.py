"""usage: per-day rollups by model and by user, kept by a trigger on usage inserts

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03

GET /admin/usage sums every user's rows over up to 366 days; over a million rows no index
makes that fast on SQLite. `usage_day_model` and `usage_day_user` hold the sums per UTC day
(`YYYY-MM-DD`) and model, and per day and user; an AFTER INSERT trigger on `usage` adds
each row to both (an upsert), so they are always in step with the rows, which remain the
truth. Existing rows are summed into them here. Usage rows are never updated or deleted;
a deleted account's rollup rows turn to user NULL (ON DELETE SET NULL) like its usage rows.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_MONEY = sa.Numeric(precision=20, scale=9).with_variant(sa.BigInteger(), "sqlite")
_SUMS = "requests, prompt_tokens, completion_tokens, cost"
_ADD = (
    "requests = {t}.requests + excluded.requests, "
    "prompt_tokens = {t}.prompt_tokens + excluded.prompt_tokens, "
    "completion_tokens = {t}.completion_tokens + excluded.completion_tokens, "
    "cost = {t}.cost + excluded.cost"
)
_NEW = "1, NEW.prompt_tokens, NEW.completion_tokens, NEW.cost"

_SQLITE_DAY = "substr(NEW.created_at, 1, 10)"
_SQLITE_TRIGGER = f"""
CREATE TRIGGER usage_rollup AFTER INSERT ON usage BEGIN
  INSERT INTO usage_day_model (day, model, {_SUMS})
  VALUES ({_SQLITE_DAY}, NEW.model, {_NEW})
  ON CONFLICT (day, model) DO UPDATE SET {_ADD.format(t="usage_day_model")};
  INSERT INTO usage_day_user (day, user_id, {_SUMS})
  VALUES ({_SQLITE_DAY}, NEW.user_id, {_NEW})
  ON CONFLICT (day, user_id) DO UPDATE SET {_ADD.format(t="usage_day_user")};
END
"""
_PG_FUNCTION = f"""
CREATE FUNCTION usage_rollup() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  d text := to_char(NEW.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD');
BEGIN
  INSERT INTO usage_day_model AS t (day, model, {_SUMS})
  VALUES (d, NEW.model, {_NEW})
  ON CONFLICT (day, model) DO UPDATE SET {_ADD.format(t="t")};
  INSERT INTO usage_day_user AS t (day, user_id, {_SUMS})
  VALUES (d, NEW.user_id, {_NEW})
  ON CONFLICT (day, user_id) DO UPDATE SET {_ADD.format(t="t")};
  RETURN NULL;
END
$$
"""
_PG_TRIGGER = (
    "CREATE TRIGGER usage_rollup AFTER INSERT ON usage FOR EACH ROW EXECUTE FUNCTION usage_rollup()"
)


def _backfill(day: str) -> None:
    op.execute(
        f"INSERT INTO usage_day_model (day, model, {_SUMS}) "
        f"SELECT {day}, model, count(*), sum(prompt_tokens), sum(completion_tokens), sum(cost) "
        f"FROM usage GROUP BY {day}, model"
    )
    op.execute(
        f"INSERT INTO usage_day_user (day, user_id, {_SUMS}) "
        f"SELECT {day}, user_id, count(*), sum(prompt_tokens), sum(completion_tokens), "
        f"sum(cost) FROM usage GROUP BY {day}, user_id"
    )


def _sums() -> list[sa.Column]:
    return [
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost", _MONEY, nullable=False),
    ]


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "usage_day_model",
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        *_sums(),
        sa.PrimaryKeyConstraint("day", "model", name=op.f("pk_usage_day_model")),
    )
    op.create_table(
        "usage_day_user",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        *_sums(),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user.id"],
            name=op.f("fk_usage_day_user_user_id_user"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_day_user")),
    )
    op.create_index(
        "ux_usage_day_user_day_user_id", "usage_day_user", ["day", "user_id"], unique=True
    )
    op.create_index("ix_usage_day_user_user_id", "usage_day_user", ["user_id"])
    if op.get_bind().dialect.name == "sqlite":
        _backfill("substr(created_at, 1, 10)")
        op.execute(_SQLITE_TRIGGER)
    else:
        _backfill("to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')")
        op.execute(_PG_FUNCTION)
        op.execute(_PG_TRIGGER)


def downgrade() -> None:
    """Downgrade schema."""
    op.execute(
        "DROP TRIGGER IF EXISTS usage_rollup"
        + ("" if op.get_bind().dialect.name == "sqlite" else " ON usage")
    )
    if op.get_bind().dialect.name != "sqlite":
        op.execute("DROP FUNCTION IF EXISTS usage_rollup()")
    op.drop_index("ix_usage_day_user_user_id", table_name="usage_day_user")
    op.drop_index("ux_usage_day_user_day_user_id", table_name="usage_day_user")
    op.drop_table("usage_day_user")
    op.drop_table("usage_day_model")
