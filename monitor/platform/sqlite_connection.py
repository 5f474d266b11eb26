"""The SQLite connection of a local install: it makes its database file's folder on the first connect, so
importing settings writes nothing and `migrate` on a fresh MONITOR_DATA_DIR still works (SQLite makes the file,
never its folder). Settings hands it to Django's SQLite backend as sqlite3.connect's `factory`."""
from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any


class FolderMakingConnection(sqlite3.Connection):
    def __init__(self, database: str | Path, *args: Any, **kwargs: Any) -> None:
        name = str(database)
        # ":memory:" and "file:..." URIs (Django's in-memory test databases) have no folder to make.
        if name != ":memory:" and not name.startswith("file:"):
            Path(name).parent.mkdir(parents=True, exist_ok=True)
        super().__init__(database, *args, **kwargs)
