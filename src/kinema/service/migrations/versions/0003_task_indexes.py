"""Indexes for the two queries a claim runs, whose cost grew with the number of tasks.

- ix_tasks_queue becomes (state, priority DESC, created_at, id): the claim's candidates,
  ordered by priority (highest first) then age, are read straight off the index. The
  old (state, priority, created_at) made the database sort every queued task at every
  claim and every idle poll: 0.8 ms with 1,000 tasks queued, 10 ms with 10,000.
- ix_tasks_account_state (account_id, state): a claim counts the account's running
  tasks inside its write transaction; without it the count read every task the account
  ever made, while holding SQLite's write lock.

Revision ID: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.drop_index("ix_tasks_queue", "tasks")
    op.create_index("ix_tasks_queue", "tasks", ["state", sa.text("priority DESC"), "created_at", "id"])
    op.create_index("ix_tasks_account_state", "tasks", ["account_id", "state"])


def downgrade() -> None:
    op.drop_index("ix_tasks_account_state", "tasks")
    op.drop_index("ix_tasks_queue", "tasks")
    op.create_index("ix_tasks_queue", "tasks", ["state", "priority", "created_at"])
