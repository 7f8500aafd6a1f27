"""Ids minted in forked workers (`serve --workers N` forks after import) never collide:
the audit entry ids (their own generator) and the event ids (bson's ObjectId)."""

from __future__ import annotations

import os

import pytest

from service.audit.chain import _entry_id
from service.events.model import new_event_id


# Python 3.12+ warns about fork() in a process with threads; this child only writes and exits.
@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_a_forked_child_mints_other_ids_than_its_parent() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send its ids and leave at once
        os.write(write, f"{_entry_id()} {new_event_id()}".encode())
        os._exit(0)
    os.close(write)
    child_entry, child_event = os.read(read, 200).decode().split()
    os.close(read)
    os.waitpid(pid, 0)
    assert child_entry[8:18] != _entry_id()[8:18]  # the process part differs
    assert child_event != new_event_id()
