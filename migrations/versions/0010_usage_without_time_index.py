"""usage: drop the index on created_at alone

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03

Since the per-day rollups (0009) answer every report over all users, each read of `usage`
names a user or an API key, and their indexes lead with it. The index on `created_at` alone
was only written: one B-tree page fewer to change in every answer's commit.
"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.drop_index("ix_usage_created_at", table_name="usage")


def downgrade() -> None:
    """Downgrade schema."""
    op.create_index("ix_usage_created_at", "usage", ["created_at"])
