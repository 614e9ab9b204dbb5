"""Store and forward: send a unit's local records to the fleet's PostgreSQL database.

Each batch is stored centrally in one transaction (COPY into a temporary
table, then inserted skipping records the unit sent before), and only after
that commit does the local store move its high-water mark past the batch. A
sync cut anywhere (network loss, ``kill -9``) therefore resends at most one
batch, and the central database keeps one copy of it: nothing is lost or
doubled. The marks live in the local store, one per target.
"""

import time
from collections.abc import Iterator
from typing import NamedTuple

from panoptes_cli.database.base import AbstractPanDB
from panoptes_cli.error import IllegalValue

BATCH_SIZE = 20_000


class SyncProgress(NamedTuple):
    """Where a sync stands after a batch (or at its end, with ``done``)."""

    unit: str
    target: str
    sent: int
    new: int
    total: int
    seconds: float
    done: bool
    complete: bool

    def as_record(self) -> dict:
        rate = round(self.sent / self.seconds) if self.seconds > 0 else None
        record = {'unit': self.unit, 'target': self.target, 'sent': self.sent, 'new': self.new,
                  'total': self.total, 'seconds': round(self.seconds, 3), 'records_per_s': rate}
        if self.done:
            record['complete'] = self.complete
        return record


def target_key(target) -> str:
    """Return the name a target's mark is kept under: its URL (password hidden) and schema."""
    from panoptes_cli.database.postgres import redact_url

    return f'{redact_url(target.url)}#{target.db_name}'


def sync(source: AbstractPanDB, target, unit: str, *, batch_size: int = BATCH_SIZE,
         max_seconds: float | None = None) -> Iterator[SyncProgress]:
    """Send the records of ``source`` not yet sent to ``target``; yield progress per batch.

    Args:
        source: The unit's local store (sqlite or file).
        target: The central store (a :class:`~panoptes_cli.database.postgres.PanPostgresDB`).
        unit (str): The unit's id, stored with each record.
        batch_size (int): Records per central transaction.
        max_seconds (float, optional): Start no new batch after this long (for cron).

    Yields:
        SyncProgress: one before the first batch (how many records wait),
        one after each batch, and a last one with ``done=True`` (``complete``
        False when ``max_seconds`` stopped it early).
    """
    if not unit:
        raise IllegalValue('no unit id: set pan_id in the config or pass --unit PAN001')
    if batch_size < 1:
        raise IllegalValue(f'invalid batch size {batch_size!r}: use a whole number >= 1')
    key = target_key(target)
    display = key.partition('#')[0]
    started = time.monotonic()
    total = source.count_unsent(key)
    sent = new = 0
    complete = True
    yield SyncProgress(unit, display, 0, 0, total, 0.0, False, False)
    batches = source.unsent(key, batch_size)
    try:
        for rows, mark in batches:
            if rows:
                new += target.receive(unit, rows)
            # Only now, with the batch committed centrally, does the mark move.
            source.mark_sent(key, mark)
            sent += len(rows)
            elapsed = time.monotonic() - started
            yield SyncProgress(unit, display, sent, new, total, elapsed, False, False)
            if max_seconds is not None and elapsed >= max_seconds and sent < total:
                complete = False
                break
    finally:
        batches.close()
    yield SyncProgress(unit, display, sent, new, total, time.monotonic() - started, True, complete)
