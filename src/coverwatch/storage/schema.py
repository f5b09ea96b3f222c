"""The schema and its migrations: where the SQLite file lives, the Alembic
config shipped in the package, and ``coverwatch db upgrade``."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

from coverwatch.errors import StoreError
from coverwatch.storage.base import make_engine
from coverwatch.storage.private import private_data_dir

__all__ = [
    "DB_FILENAME",
    "alembic_config",
    "current_revision",
    "head_revision",
    "sqlite_url",
    "upgrade",
    "upgrade_engine",
]

DB_FILENAME = "coverwatch.db"
_MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def sqlite_url(data_dir: Path) -> str:
    """The URL of the embedded database file in ``data_dir``."""
    return f"sqlite:///{(Path(data_dir) / DB_FILENAME).resolve()}"


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config pointing at the migrations shipped inside the package."""
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS).replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The newest schema revision this version of coverwatch knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise StoreError("no migrations found in the coverwatch package")
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade_engine(engine: Engine) -> None:
    with engine.connect() as conn:
        command.upgrade(alembic_config(conn), "head")
        if conn.in_transaction():
            conn.commit()


def upgrade(url: str | None, data_dir: Path | None = None) -> str:
    """Migrate the database to the newest schema (``coverwatch db upgrade``); returns it."""
    if url is None:
        if data_dir is None:
            raise StoreError("upgrade needs a database URL or a data directory")
        private_data_dir(data_dir, DB_FILENAME)
        url = sqlite_url(data_dir)
    engine = make_engine(url)
    try:
        upgrade_engine(engine)
        return head_revision()
    finally:
        engine.dispose()
