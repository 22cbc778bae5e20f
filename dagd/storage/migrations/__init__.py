"""Alembic migrations of the instance database; ``dagd.storage.migrate`` drives them."""
