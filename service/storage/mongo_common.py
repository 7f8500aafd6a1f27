"""What the MongoDB adapter's modules share: the document type and the driver-error guard."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pymongo.errors import PyMongoError

from service.storage.base import DatabaseUnavailable

Document = dict[str, Any]


@contextmanager
def unavailable_on_driver_error() -> Iterator[None]:
    """Any driver failure (server down, timeout, network) is a 503: nothing was stored."""
    try:
        yield
    except PyMongoError:
        raise DatabaseUnavailable() from None
