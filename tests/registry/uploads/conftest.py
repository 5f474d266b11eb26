"""Fixtures for the upload tests: a temp directory every upload goes to, and an admin in a browser."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.registry.uploads.helpers import Browser


@pytest.fixture
def upload_dir(settings, tmp_path) -> Path:
    """Every uploaded file goes to disk here (no in-memory uploads), so a left-over upload would show."""
    path = tmp_path / "upload-tmp"
    path.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = str(path)
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 0
    return path



@pytest.fixture
def browser(upload_dir) -> Browser:
    return Browser()
