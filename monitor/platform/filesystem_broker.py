"""kombu's filesystem transport (the local default broker, `make run` and the SQLite tests) without its lost messages.

kombu 5.7's transport writes a message straight into the folder its consumers list, so a worker polling at that
moment can take the file while it is still empty, fail to decode it and drop the task (measured: 45 and 57 of
3,000 messages lost with one consumer polling while one process published, 74 with two consumers; CI once saw two
of a sharded scan's three parts never run, most likely this). Its consumers move a taken file to the system's
temporary folder, which is a copy, not a rename, when that folder is on another filesystem; and two processes
binding queues to a new exchange at once may each create the exchange's table: one lost the other's bindings, or
died reading the table half-written.

Here every file a consumer or reader can see is complete when it appears: a message is written under a name no
queue matches and renamed into place (atomic within one folder), a consumer takes a message by renaming it into
the broker's own processed folder (one consumer wins, the others move on), and an exchange's table is created
the same way (a second creator finds it and adds its binding under the file's lock).

Selected by CELERY_BROKER_TRANSPORT when the broker URL is filesystem:// (monitor/settings.py).
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path
from queue import Empty
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

PARTIAL = ".partial-"  # a file being written: its name has no "<queue>.msg" after the first dot


def _write_new(folder: Path, name: str, data: bytes) -> None:
    """Write `data` beside `folder / name` under a name no reader looks at, then rename it into place."""
    partial = folder / f"{PARTIAL}{uuid.uuid4().hex}"
    try:
        partial.write_bytes(data)
        os.replace(partial, folder / name)
    except OSError:
        partial.unlink(missing_ok=True)
        raise


class Channel(filesystem.Channel):
    """kombu's filesystem channel with complete-on-sight files (see the module's docstring)."""

    def __init__(self, connection: Any, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)
        # Made by the first channel a process opens, to publish or to consume: settings only name them (importing
        # the settings writes nothing, so a read-only container starts).
        for folder in (self.data_folder_in, self.data_folder_out, self.processed_folder, self.control_folder):
            Path(folder).mkdir(parents=True, exist_ok=True)

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        try:
            _write_new(Path(self.data_folder_out), name, str_to_bytes(dumps(payload)))
        except OSError as exc:
            raise ChannelError(f"Cannot add file {name!r} to directory") from exc

    def _get(self, queue: str) -> Any:
        wanted = f"{queue}.msg"
        taken_folder = Path(self.processed_folder)
        for name in sorted(os.listdir(self.data_folder_in)):
            if name.partition(".")[2] != wanted:
                continue
            taken = taken_folder / name
            try:
                os.rename(os.path.join(self.data_folder_in, name), taken)  # one consumer gets it
            except FileNotFoundError:
                continue  # another consumer took it first
            except OSError as exc:
                raise ChannelError(f"Cannot take {name!r} from the queue's folder") from exc
            try:
                payload = taken.read_bytes()
                if not self.store_processed:
                    taken.unlink()
            except OSError as exc:
                raise ChannelError(f"Cannot read file {str(taken)!r} from queue.") from exc
            return loads(bytes_to_str(payload))
        raise Empty()

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str, queue: str) -> None:
        file = self._exchange_file(exchange)
        if not file.exists():
            binding = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
            first = self.control_folder / f"{PARTIAL}{uuid.uuid4().hex}"
            first.write_bytes(str_to_bytes(dumps([binding])))
            try:
                os.link(first, file)  # fails if another process created the table meanwhile
                return
            except FileExistsError:
                pass  # add the binding to the table the other process made, under its lock, below
            finally:
                first.unlink(missing_ok=True)
        super()._queue_bind(exchange, routing_key, pattern, queue)


class Transport(filesystem.Transport):
    Channel = Channel
