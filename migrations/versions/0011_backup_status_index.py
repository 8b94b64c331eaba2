"""backup: an index on (status, heartbeat_at)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05

Listing a user's backups and polling one's status first fail the jobs whose heartbeat
stopped (`status = 'in_progress' AND heartbeat_at < ?`). Without an index that read every
user's rows, on every poll.
"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_index("ix_backup_status_heartbeat", "backup", ["status", "heartbeat_at"])


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_backup_status_heartbeat", table_name="backup")
