"""accounts.balance: the running sum of an account's ledger entries, filled from the entries already there.

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.add_column("accounts", sa.Column("balance", sa.Integer, nullable=False, server_default="0"))
    op.execute("UPDATE accounts SET balance = (SELECT coalesce(sum(amount), 0) FROM ledger_entries WHERE ledger_entries.account_id = accounts.id)")


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("balance")
