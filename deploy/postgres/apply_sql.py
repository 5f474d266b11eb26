"""Run one SQL file against DATABASE_URL, as one transaction: the `migrate` service's grants after the migrations
(deploy/postgres/after_migrate.sql). The app image has no psql."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import psycopg


def main(path: str) -> None:
    with psycopg.connect(os.environ["DATABASE_URL"]) as connection:  # commits on leaving the block
        connection.execute(Path(path).read_text())


if __name__ == "__main__":
    main(sys.argv[1])
