"""usage: one row per answer, for accounting

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03

The cost is NUMERIC(20, 9) on PostgreSQL and an integer count of nano-dollars on SQLite
(whose NUMERIC is a float); `vektor.usage.models.Money` converts both to Decimal.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "usage",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("api_key_id", sa.Uuid(), nullable=True),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("deployment", sa.String(length=160), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column(
            "cost",
            sa.Numeric(precision=20, scale=9).with_variant(sa.BigInteger(), "sqlite"),
            nullable=False,
        ),
        sa.Column("cached", sa.Boolean(), nullable=False),
        sa.Column("estimated", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("finish_reason", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user.id"], name=op.f("fk_usage_user_id_user"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage")),
    )
    op.create_index("ix_usage_user_id_created_at", "usage", ["user_id", "created_at"])
    op.create_index("ix_usage_created_at", "usage", ["created_at"])


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_usage_created_at", table_name="usage")
    op.drop_index("ix_usage_user_id_created_at", table_name="usage")
    op.drop_table("usage")
