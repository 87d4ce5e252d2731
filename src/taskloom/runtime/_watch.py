"""Wake-ups for subscribers, and news of tasks that ended in another process.

Writes made through this runtime wake local subscribers at once. Writes made by other
processes are seen by one watcher loop per runtime: it waits for the store to report a
change (LISTEN/NOTIFY on PostgreSQL; SQLite and memory are polled), then reads the head
(state, last `seq`) of every task someone here is interested in, and wakes or interrupts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Generator

from .._record import TaskRecord
from ..events import Event
from ..states import TERMINAL_STATES
from ..stores import Store
from ..task import Task

__all__ = ("Bus", "follow", "watch")

_log = logging.getLogger("taskloom")


class Bus:
    """Per-task wake-ups for event subscribers, and the live handles of this process."""

    def __init__(self) -> None:
        self._subs: dict[str, set[asyncio.Event]] = {}
        self._seen: dict[str, int] = {}
        self.live: dict[str, set[Task]] = {}
        self.interest = asyncio.Event()
        """Set whenever there is something for the watcher to watch."""
        self.on_change: Callable[[], None] | None = None
        """Called whenever the store reports a change (a worker claims then); the watcher
        then runs even when nothing is watched."""

    @contextlib.contextmanager
    def subscribe(self, task_id: str) -> Generator[asyncio.Event]:
        """Register interest in `task_id`; the event is set whenever it may have news."""
        waiter = asyncio.Event()
        self._subs.setdefault(task_id, set()).add(waiter)
        self.interest.set()
        try:
            yield waiter
        finally:
            subs = self._subs.get(task_id)
            if subs is not None:
                subs.discard(waiter)
                if not subs:
                    del self._subs[task_id]
                    self._seen.pop(task_id, None)

    def notify(self, task_id: str, seq: int | None = None) -> None:
        subs = self._subs.get(task_id)
        if subs:
            if seq is not None:
                self._seen[task_id] = seq
            for waiter in subs:
                waiter.set()

    def attach(self, task: Task) -> None:
        task_id = task.id
        handles = self.live.get(task_id)
        if handles is None:
            self.live[task_id] = {task}
        else:
            handles.add(task)
        self.interest.set()

    def detach(self, task: Task) -> None:
        handles = self.live.get(task.id)
        if handles is not None:
            handles.discard(task)
            if not handles:
                del self.live[task.id]

    def watched(self) -> set[str]:
        return self._subs.keys() | self.live.keys()

    def advance(self, task_id: str, seq: int) -> None:
        """The store says `task_id` is at `seq`: wake its subscribers if that is news."""
        if task_id in self._subs and self._seen.get(task_id, -1) < seq:
            self.notify(task_id, seq)


async def watch(
    store: Store, bus: Bus, *, poll_interval: float, on_error: Callable[[Exception], None]
) -> None:
    """Run forever: turn other processes' writes into wake-ups and interrupts."""
    while True:
        if not bus.watched() and bus.on_change is None:
            bus.interest.clear()
            await bus.interest.wait()
            continue
        try:
            await store.wait_for_change(poll_interval)
            if bus.on_change is not None:
                bus.on_change()
            ids = bus.watched()
            if not ids:
                continue
            heads = await store.heads(ids)
            for task_id, (state, seq) in heads.items():
                bus.advance(task_id, seq)
                handles = bus.live.get(task_id)
                if state in TERMINAL_STATES and handles and _unaware(handles):
                    record = await store.get(task_id)
                    if record is not None:
                        _end_all(handles, record)
        except Exception as exc:  # the watcher must outlive a store hiccup
            on_error(exc)
            await asyncio.sleep(poll_interval * 10)


def _unaware(handles: set[Task]) -> bool:
    """Whether a handle may not know yet that its task ended (else reading it is wasted).

    A handle that has seen the end (its own write, mostly) or whose body is ending the
    task itself ignores the news; see `Task._ended_externally`.
    """
    return any(
        h._rec.state not in TERMINAL_STATES and not h._ending_in_body  # pyright: ignore[reportPrivateUsage] -- runtime-internal
        for h in handles
    )


def _end_all(handles: set[Task], record: TaskRecord) -> None:
    for handle in list(handles):
        handle._ended_externally(record)  # pyright: ignore[reportPrivateUsage] -- runtime-internal


async def follow(
    store: Store,
    bus: Bus,
    task_id: str,
    *,
    after: int,
    reload: Callable[[str], Awaitable[TaskRecord]],
    patience: float,
) -> AsyncIterator[Event]:
    """A task's stored events after `after`, then live ones until it ends (`Runtime.events`).

    Woken by the bus; every `patience` seconds without news it reloads the record, so a
    purged task ends the subscription (`reload` raises).
    """
    record = await reload(task_id)
    with bus.subscribe(task_id) as waiter:
        while True:
            if record.state in TERMINAL_STATES and record.last_seq <= after:
                return  # it ended and its last event is behind `after`: nothing will come
            waiter.clear()
            batch = await store.read_events(task_id, after=after, limit=500)
            for event in batch:
                yield event
                after = event.seq
                if event.kind in TERMINAL_STATES:
                    return
            if batch:
                continue
            try:
                async with asyncio.timeout(patience):
                    await waiter.wait()
            except TimeoutError:
                record = await reload(task_id)
