"""Upload handling: an oversized upload cannot fill the disk.

Django streams an upload over FILE_UPLOAD_MAX_MEMORY_SIZE to a temporary file, however large. This
handler stops writing once a file passes the largest upload limit (ARTIFACT_MAX_BYTES or
DATASET_MAX_BYTES) and reads the rest of it without keeping it. The file's `size` is still the size
that was sent, so the form refuses it by that size (RegisterModelForm checks every file) and nothing
ever reads the truncated copy, which is deleted at the end of the request like any upload.
"""
from __future__ import annotations

from django.conf import settings
from django.core.files.uploadhandler import TemporaryFileUploadHandler


def upload_cap() -> int:
    return max(settings.ARTIFACT_MAX_BYTES, settings.DATASET_MAX_BYTES)


class CappedTemporaryFileUploadHandler(TemporaryFileUploadHandler):
    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        room = upload_cap() + 1 - start  # one byte past the cap: the copy on disk shows it was too big
        if room > 0:
            self.file.write(raw_data[:room])
