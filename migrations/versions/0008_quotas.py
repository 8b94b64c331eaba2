"""quotas: an admin's limits per user, an API key's own limits, usage by key

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03

A NULL limit of `user_quota` is the DEFAULT_* setting; of `api_key_quota`, no limit of the
key's own. Budgets are `Money` like `usage.cost` (NUMERIC(20, 9) on PostgreSQL, integer
nano-dollars on SQLite). The index lets a key's counters be rebuilt from its usage rows.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _money() -> sa.types.TypeEngine[object]:
    return sa.Numeric(precision=20, scale=9).with_variant(sa.BigInteger(), "sqlite")


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "user_quota",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("tokens_per_day", sa.BigInteger(), nullable=True),
        sa.Column("requests_per_day", sa.BigInteger(), nullable=True),
        sa.Column("budget_per_month", _money(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user.id"], name=op.f("fk_user_quota_user_id_user"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_user_quota")),
    )
    op.create_table(
        "api_key_quota",
        sa.Column("api_key_id", sa.Uuid(), nullable=False),
        sa.Column("tokens_per_day", sa.BigInteger(), nullable=True),
        sa.Column("budget_per_month", _money(), nullable=True),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["api_key.id"],
            name=op.f("fk_api_key_quota_api_key_id_api_key"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("api_key_id", name=op.f("pk_api_key_quota")),
    )
    op.create_index("ix_usage_api_key_id_created_at", "usage", ["api_key_id", "created_at"])


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_usage_api_key_id_created_at", table_name="usage")
    op.drop_table("api_key_quota")
    op.drop_table("user_quota")
