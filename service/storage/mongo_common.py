"""What the MongoDB adapter's modules share: the document type and the driver-error guard."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pymongo.errors import PyMongoError

from service.storage.base import StorageHealth, unavailable

Document = dict[str, Any]
# The adapter's outages, logged with their cause; one per process (one database per process).
HEALTH = StorageHealth("mongodb")


@contextmanager
def unavailable_on_driver_error(*, write: bool = False) -> Iterator[None]:
    """Any driver failure (server down, timeout, network) is a 503: nothing was stored.
    Logged with its cause; a failed write shows in readiness until one succeeds."""
    try:
        yield
    except PyMongoError as exc:
        error = unavailable(exc)
        HEALTH.failed(error, write=write)
        raise error from None
    if write:
        HEALTH.write_ok()
