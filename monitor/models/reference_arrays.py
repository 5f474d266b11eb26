"""Reference data as stored: a model's member, non-member or population rows, encrypted at rest (Fernet) as one
npz of arrays. Storage's own format, so the dataset model can open its rows; the CSV check that makes them is
`monitor.registry.reference_data`."""
from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
from cryptography.fernet import InvalidToken

from monitor.platform.crypto import data_fernet


class DatasetError(ValueError):
    """A CSV that cannot be used; `details` lists each problem with its row and column."""

    def __init__(self, message: str, details: list[dict] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []

    def __str__(self) -> str:
        lines = [self.message] + [
            "  " + ", ".join(f"{key} {value}" for key, value in item.items() if key != "message") + f": {item['message']}"
            for item in self.details
        ]
        return "\n".join(lines)


@dataclass(frozen=True)
class ReferenceArrays:
    X: np.ndarray  # float64 (n, d), in the model's feature order
    y: np.ndarray  # int64 (n,), index into the model's class labels
    record_ids: np.ndarray = field(repr=False)  # str (n,): the id column, or the 1-based data row


def encrypt_arrays(arrays: ReferenceArrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, X=arrays.X, y=arrays.y, record_ids=arrays.record_ids.astype("U"))
    return data_fernet().encrypt(buffer.getvalue())


def decrypt_arrays(ciphertext: bytes) -> ReferenceArrays:
    try:
        clear = data_fernet().decrypt(ciphertext)
    except InvalidToken as exc:
        raise DatasetError("reference data cannot be decrypted: none of DATA_ENCRYPTION_KEYS is the key it was "
                           "stored with") from exc
    with np.load(io.BytesIO(clear), allow_pickle=False) as npz:
        return ReferenceArrays(X=npz["X"], y=npz["y"], record_ids=npz["record_ids"])
