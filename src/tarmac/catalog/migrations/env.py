"""Alembic environment: runs on the connection Tarmac hands it (see catalog/_engine.py)."""

from alembic import context

from tarmac.catalog._tables import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
