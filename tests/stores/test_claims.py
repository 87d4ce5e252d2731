"""The `Store` contract of durable workers, run on every store (memory, SQLite, PostgreSQL).

Claims (order, due time, names, limit, serial keys), leases (epochs and fencing, heartbeats,
take-over of ended and released leases) and idempotent creates. A lease is made to end by
claiming with a tiny `lease_seconds` and sleeping a little past it.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

import taskloom
from taskloom._record import Change, NewEvent, TaskRecord, now_ms
from taskloom.states import TaskState, sources

_S = TaskState
_T0 = 1_700_000_000_000
_JOB = '{"prompt":"go"}'
_LONG = 60.0
_SHORT = 0.05


def _record(task_id: str, **fields: Any) -> TaskRecord:
    fields.setdefault("name", "job")
    fields.setdefault("job", _JOB)
    fields.setdefault("created_ms", _T0)
    fields.setdefault("updated_ms", fields["created_ms"])
    fields.setdefault("retention_ms", 60_000)
    return TaskRecord(id=task_id, **fields)


def _submitted() -> NewEvent:
    return NewEvent(kind="submitted", data='{"name":"job"}', at_ms=_T0)


async def _submit(store: taskloom.Store, task_id: str, **fields: Any) -> TaskRecord:
    stored, created = await store.create(_record(task_id, **fields), [_submitted()])
    assert created
    return stored


def _move(task_id: str, target: TaskState, *, epoch: int | None = None) -> Change:
    kind = "started" if target is _S.WORKING else target.value
    return Change(
        task_id=task_id,
        event=NewEvent(kind=kind, data="{}", at_ms=now_ms()),
        from_states=sources(target),
        to_state=target,
        result="null" if target is _S.COMPLETED else None,
        epoch=epoch,
    )


def _progress(task_id: str, *, epoch: int | None) -> Change:
    return Change(
        task_id=task_id,
        event=NewEvent(kind="progressed", data='{"progress":{"n":1}}', at_ms=now_ms()),
        from_states=(_S.WORKING.value, _S.INPUT_REQUIRED.value),
        progress={"n": 1},
        progress_json='{"n":1}',
        epoch=epoch,
    )


async def _claim(
    store: taskloom.Store,
    worker: str = "w1",
    *,
    names: tuple[str, ...] = ("job",),
    limit: int = 10,
    lease: float = _LONG,
) -> list[str]:
    return [r.id for r in await store.claim(worker, names, limit=limit, lease_seconds=lease)]


async def _get(store: taskloom.Store, task_id: str) -> TaskRecord:
    record = await store.get(task_id)
    assert record is not None
    return record


async def _ended(lease: float = _SHORT) -> None:
    """Sleep until the leases of `lease` seconds taken before have ended, by every store's clock."""
    await asyncio.sleep(lease + 0.1)


# -- what a claim takes ---------------------------------------------------------------------


async def test_claim_takes_due_tasks_by_priority_then_fire_time_then_submission(
    store: taskloom.Store,
) -> None:
    await _submit(store, "a", created_ms=_T0 + 5)
    await _submit(store, "b", priority=5, created_ms=_T0 + 9)
    await _submit(store, "c", created_ms=_T0 + 20, fire_ms=_T0 + 1)  # fires before a's creation
    await _submit(store, "d", created_ms=_T0 + 5)  # a tie with a: submitted after it
    await _submit(store, "e", priority=5, created_ms=_T0 + 9)
    await _submit(store, "f", priority=-1, created_ms=_T0)
    assert await _claim(store, limit=2) == ["b", "e"]
    assert await _claim(store, limit=1) == ["c"]
    assert await _claim(store) == ["a", "d", "f"]
    assert await _claim(store) == []


async def test_a_claimed_task_is_working_under_the_workers_lease(store: taskloom.Store) -> None:
    await _submit(store, "t1")
    before = now_ms()
    [claimed] = await store.claim("w1", ["job"], limit=5, lease_seconds=30)
    after = now_ms()
    assert claimed == await _get(store, "t1")
    assert (claimed.state, claimed.epoch, claimed.lease_owner) == (_S.WORKING, 1, "w1")
    assert claimed.recoveries == 0
    assert claimed.started_ms is not None and claimed.lease_ms is not None
    # the store's clock: PostgreSQL's is the server's, on this machine here
    assert before - 1_000 <= claimed.started_ms <= after + 1_000
    assert claimed.lease_ms - claimed.started_ms == 30_000
    assert claimed.updated_ms == claimed.started_ms
    assert claimed.last_seq == 2
    assert (claimed.job, claimed.payload) == (_JOB, "null")
    submitted, started = await store.read_events("t1")
    assert isinstance(submitted, taskloom.TaskSubmitted)
    assert isinstance(started, taskloom.TaskStarted)
    assert (started.seq, started.worker) == (2, "w1")
    assert int(started.at.timestamp() * 1000) == claimed.started_ms


async def test_claim_takes_only_due_tasks_with_a_job_and_a_known_name(
    store: taskloom.Store,
) -> None:
    await _submit(store, "later", fire_ms=now_ms() + 60_000)
    await _submit(store, "due", fire_ms=now_ms() - 1)
    await _submit(store, "no-job", job=None)
    await _submit(store, "other", name="other")
    await _submit(store, "ended")
    assert await store.apply(_move("ended", _S.CANCELLED)) == 2
    assert await _claim(store, names=("nothing",)) == []
    assert await _claim(store) == ["due"]
    assert await _claim(store, names=("job", "other")) == ["other"]
    assert await _claim(store, names=("job", "other")) == []
    assert (await _get(store, "later")).state is _S.SUBMITTED
    assert (await _get(store, "no-job")).state is _S.SUBMITTED


async def test_claim_of_no_names_or_no_room_takes_nothing(store: taskloom.Store) -> None:
    await _submit(store, "t1")
    assert await store.claim("w1", [], limit=5, lease_seconds=_LONG) == []
    assert await store.claim("w1", ("job",), limit=0, lease_seconds=_LONG) == []
    assert await store.claim("w1", {"job"}, limit=-1, lease_seconds=_LONG) == []
    assert (await _get(store, "t1")).state is _S.SUBMITTED


async def test_claim_takes_at_most_limit(store: taskloom.Store) -> None:
    for i in range(7):
        await _submit(store, f"t{i}", created_ms=_T0 + i)
    assert await _claim(store, limit=3) == ["t0", "t1", "t2"]
    assert await _claim(store, "w2", limit=3) == ["t3", "t4", "t5"]
    assert await _claim(store, limit=3) == ["t6"]


async def test_terminal_tasks_are_never_claimed(store: taskloom.Store) -> None:
    await _submit(store, "done")
    await _submit(store, "failed")
    assert await _claim(store, lease=_SHORT) == ["done", "failed"]
    assert await store.apply(_move("done", _S.COMPLETED, epoch=1)) == 3
    assert await store.apply(_move("failed", _S.FAILED, epoch=1)) == 3
    await _ended()
    assert await _claim(store, "w2") == []
    assert not await store.release("done", 1)
    assert await store.heartbeat("w1", {"done": 1}, lease_seconds=_LONG) == set()


# -- epochs and fencing ---------------------------------------------------------------------


async def test_a_write_fenced_by_an_old_epoch_is_refused(store: taskloom.Store) -> None:
    await _submit(store, "t1")
    assert await store.apply(_progress("t1", epoch=0)) is None  # not working yet
    assert await _claim(store, lease=_SHORT) == ["t1"]
    assert await store.apply(_progress("t1", epoch=0)) is None
    assert await store.apply(_progress("t1", epoch=2)) is None
    assert await store.apply(_progress("t1", epoch=1)) == 3
    await _ended()
    [taken] = await store.claim("w2", ["job"], limit=5, lease_seconds=_LONG)
    assert (taken.id, taken.epoch, taken.lease_owner) == ("t1", 2, "w2")
    before = await _get(store, "t1")
    assert await store.apply(_progress("t1", epoch=1)) is None
    assert await store.apply(_move("t1", _S.COMPLETED, epoch=1)) is None
    assert await _get(store, "t1") == before
    assert await store.apply(_move("t1", _S.COMPLETED, epoch=2)) == 5
    assert [e.kind for e in await store.read_events("t1")] == [
        "submitted",
        "started",
        "progressed",
        "recovered",
        "completed",
    ]


async def test_a_write_without_an_epoch_is_not_fenced(store: taskloom.Store) -> None:
    await _submit(store, "t1")
    assert await _claim(store) == ["t1"]
    assert await store.apply(_progress("t1", epoch=None)) == 3
    assert await store.apply(_move("t1", _S.CANCELLED)) == 4


# -- taking over ----------------------------------------------------------------------------


async def test_an_ended_lease_is_taken_over(store: taskloom.Store) -> None:
    await _submit(store, "t1", created_ms=_T0)
    await _submit(store, "t2", created_ms=_T0 + 1)
    await _submit(store, "t3", created_ms=_T0 + 2)
    assert await _claim(store, limit=1, lease=_SHORT) == ["t1"]
    assert await _claim(store, limit=1, lease=_LONG) == ["t2"]
    assert await store.apply(_move("t1", _S.INPUT_REQUIRED, epoch=1)) == 3
    await _ended()
    # taken over first, then what is due; t2's lease has not ended
    taken, due = await store.claim("w2", ["job"], limit=5, lease_seconds=_LONG)
    assert due.id == "t3"
    assert taken == await _get(store, "t1")
    assert (taken.state, taken.epoch, taken.recoveries) == (_S.INPUT_REQUIRED, 2, 1)
    assert (taken.lease_owner, taken.last_seq) == ("w2", 4)
    recovered = (await store.read_events("t1"))[-1]
    assert isinstance(recovered, taskloom.TaskRecovered)
    assert (recovered.seq, recovered.worker, recovered.epoch) == (4, "w2", 2)
    assert (recovered.recoveries, recovered.released) == (1, False)
    assert int(recovered.at.timestamp() * 1000) == taken.updated_ms
    assert await _claim(store, "w3") == []


async def test_recoveries_count_each_take_over(store: taskloom.Store) -> None:
    await _submit(store, "t1")
    assert await _claim(store, "w1", lease=_SHORT) == ["t1"]
    for worker, epoch in (("w2", 2), ("w3", 3)):
        await _ended()
        [taken] = await store.claim(worker, ["job"], limit=1, lease_seconds=_SHORT)
        assert (taken.epoch, taken.recoveries, taken.lease_owner) == (epoch, epoch - 1, worker)
    record = await _get(store, "t1")
    assert (record.state, record.epoch, record.recoveries) == (_S.WORKING, 3, 2)
    assert [e.kind for e in await store.read_events("t1")] == [
        "submitted",
        "started",
        "recovered",
        "recovered",
    ]


async def test_ended_leases_are_taken_over_first_oldest_first(store: taskloom.Store) -> None:
    for i in range(4):
        await _submit(store, f"t{i}", created_ms=_T0 + i)
    # t1's lease ends first though t0 was claimed first
    assert await _claim(store, limit=1, lease=0.3) == ["t0"]
    assert await _claim(store, limit=1, lease=_SHORT) == ["t1"]
    await _ended(0.3)
    assert await _claim(store, "w2", limit=3) == ["t1", "t0", "t2"]
    assert await _claim(store, "w2") == ["t3"]


async def test_a_released_lease_is_taken_over_at_once(store: taskloom.Store) -> None:
    await _submit(store, "t1")
    assert not await store.release("t1", 0)  # submitted: nothing to release
    assert await _claim(store, lease=_LONG) == ["t1"]
    assert not await store.release("t1", 0)
    assert not await store.release("t1", 2)
    assert not await store.release("ghost", 1)
    assert await store.release("t1", 1)
    released = await _get(store, "t1")
    assert (released.state, released.lease_owner, released.lease_ms) == (_S.WORKING, None, None)
    assert released.last_seq == 2  # releasing writes no event
    [taken] = await store.claim("w2", ["job"], limit=5, lease_seconds=_LONG)
    assert (taken.epoch, taken.recoveries, taken.lease_owner) == (2, 0, "w2")
    recovered = (await store.read_events("t1"))[-1]
    assert isinstance(recovered, taskloom.TaskRecovered)
    assert (recovered.worker, recovered.epoch, recovered.recoveries) == ("w2", 2, 0)
    assert recovered.released is True
    assert await store.apply(_progress("t1", epoch=1)) is None
    assert await store.apply(_progress("t1", epoch=2)) == 4


# -- heartbeats -----------------------------------------------------------------------------


async def test_heartbeat_extends_only_the_workers_current_leases(store: taskloom.Store) -> None:
    for task_id in ("a", "b", "c", "d"):
        await _submit(store, task_id)
    assert await _claim(store, "w1", limit=3, lease=_SHORT) == ["a", "b", "c"]
    assert await _claim(store, "w2", lease=_SHORT) == ["d"]
    assert await store.apply(_move("c", _S.COMPLETED, epoch=1)) == 3
    leases = {"a": 1, "b": 7, "c": 1, "d": 1, "ghost": 1}
    assert await store.heartbeat("w1", leases, lease_seconds=_LONG) == {"a"}
    assert await store.heartbeat("w1", {}, lease_seconds=_LONG) == set()
    extended = await _get(store, "a")
    assert extended.lease_ms is not None and extended.lease_ms > now_ms() + 30_000
    assert extended.last_seq == 2  # a heartbeat writes no event
    await _ended()
    assert await _claim(store, "w3") == ["b", "d"]
    assert await store.heartbeat("w1", {"b": 1}, lease_seconds=_LONG) == set()
    assert await store.heartbeat("w3", {"b": 2, "d": 2}, lease_seconds=_LONG) == {"b", "d"}


# -- serial keys ----------------------------------------------------------------------------


async def test_tasks_with_a_serial_key_run_one_at_a_time(store: taskloom.Store) -> None:
    await _submit(store, "k1", serial_key="K", created_ms=_T0 + 1)
    await _submit(store, "k2", serial_key="K", created_ms=_T0 + 2)
    await _submit(store, "free", created_ms=_T0 + 3)
    await _submit(store, "l1", serial_key="L", created_ms=_T0 + 4)
    await _submit(store, "k3", serial_key="K", created_ms=_T0 + 5)
    assert await _claim(store) == ["k1", "free", "l1"]
    assert await _claim(store) == []
    assert await store.apply(_move("k1", _S.COMPLETED, epoch=1)) == 3
    assert await _claim(store, limit=1) == ["k2"]
    assert await store.apply(_move("k2", _S.FAILED, epoch=1)) == 3
    assert await _claim(store) == ["k3"]


async def test_a_serial_key_waits_for_the_task_before_it_in_claim_order(
    store: taskloom.Store,
) -> None:
    await _submit(store, "low", serial_key="K", created_ms=_T0 + 1)
    await _submit(store, "high", serial_key="K", priority=3, created_ms=_T0 + 2)
    await _submit(store, "later", serial_key="K", priority=9, fire_ms=now_ms() + 60_000)
    await _submit(store, "theirs", serial_key="M", name="other", created_ms=_T0 + 1)
    await _submit(store, "mine", serial_key="M", created_ms=_T0 + 2)
    # the earlier "theirs" blocks "mine" even for a worker that cannot run it
    assert await _claim(store) == ["high"]
    assert await _claim(store, "w2", names=("other",)) == ["theirs"]
    assert await store.apply(_move("high", _S.COMPLETED, epoch=1)) == 3
    assert await store.apply(_move("theirs", _S.COMPLETED, epoch=1)) == 3
    assert await _claim(store) == ["low", "mine"]


async def test_a_taken_over_task_still_holds_its_serial_key(store: taskloom.Store) -> None:
    await _submit(store, "k1", serial_key="K", created_ms=_T0 + 1)
    await _submit(store, "k2", serial_key="K", created_ms=_T0 + 2)
    assert await _claim(store, lease=_SHORT) == ["k1"]
    await _ended()
    assert await _claim(store, "w2") == ["k1"]
    assert await _claim(store, "w2") == []


# -- idempotency keys -----------------------------------------------------------------------


async def test_create_with_a_taken_idempotency_key_returns_that_task(
    store: taskloom.Store,
) -> None:
    first = await _submit(store, "t1", idempotency_key="order-7", payload='"first"')
    again, created = await store.create(
        _record("t2", idempotency_key="order-7", payload='"second"'), [_submitted()]
    )
    assert created is False
    assert again == first
    assert await store.get("t2") is None
    assert await store.read_events("t2") == []
    # the id is looked at first: a taken id wins over a free key
    same_id, created = await store.create(_record("t1", idempotency_key="other"), [_submitted()])
    assert (created, same_id) == (False, first)
    fresh, created = await store.create(_record("t3", idempotency_key="other"), [_submitted()])
    assert created and fresh.idempotency_key == "other"


async def test_tasks_without_an_idempotency_key_never_collide(store: taskloom.Store) -> None:
    for i in range(3):
        await _submit(store, f"t{i}")
    assert len(await store.heads(["t0", "t1", "t2"])) == 3


async def test_racing_creates_with_one_idempotency_key_make_one_task(
    store: taskloom.Store,
) -> None:
    results = await asyncio.gather(
        *(store.create(_record(f"t{i}", idempotency_key="k"), [_submitted()]) for i in range(6))
    )
    assert [created for _, created in results].count(True) == 1
    winner = next(rec for rec, created in results if created)
    assert {rec.id for rec, _ in results} == {winner.id}
    assert await store.heads([f"t{i}" for i in range(6)]) == {winner.id: (_S.SUBMITTED, 1)}


async def test_a_purged_tasks_idempotency_key_is_free_again(store: taskloom.Store) -> None:
    await _submit(store, "t1", idempotency_key="k", retention_ms=0)
    assert await _claim(store) == ["t1"]
    assert await store.apply(_move("t1", _S.COMPLETED, epoch=1)) == 3
    ended = await _get(store, "t1")
    assert ended.purge_ms is not None
    assert await store.purge(ended.purge_ms) == 1
    again = await _submit(store, "t2", idempotency_key="k")
    assert again.id == "t2"


async def test_scheduling_fields_round_trip(store: taskloom.Store) -> None:
    record = _record(
        "t1",
        priority=-3,
        fire_ms=_T0 + 77,
        idempotency_key="ключ ✓",
        serial_key="série",
        job='{"prompt":"é 🚀","limits":{"turns":3}}',
    )
    stored, _ = await store.create(record, [_submitted()])
    assert stored == await _get(store, "t1")
    assert (stored.priority, stored.fire_ms, stored.idempotency_key) == (-3, _T0 + 77, "ключ ✓")
    assert (stored.serial_key, stored.job) == ("série", '{"prompt":"é 🚀","limits":{"turns":3}}')
    assert (stored.lease_owner, stored.lease_ms, stored.recoveries, stored.epoch) == (
        None,
        None,
        0,
        0,
    )


# -- many workers ---------------------------------------------------------------------------


async def _drain(store: taskloom.Store, worker: str) -> list[str]:
    """Claim until nothing is left for `worker`; what it claimed."""
    mine: list[str] = []
    while batch := await _claim(store, worker, limit=7):
        mine += batch
    return mine


async def _claim_concurrently(url: str, stores: int, tasks: int) -> None:
    opened = [await taskloom.open_store(url) for _ in range(stores)]
    try:
        for i in range(tasks):
            await _submit(opened[i % stores], f"t{i:03}", created_ms=_T0 + i)
        claimed = await asyncio.gather(*(_drain(store, f"w{n}") for n, store in enumerate(opened)))
        every = list(itertools.chain.from_iterable(claimed))
        assert sorted(every) == [f"t{i:03}" for i in range(tasks)]  # each exactly once
        for n, mine in enumerate(claimed):
            for task_id in mine:
                record = await _get(opened[0], task_id)
                assert (record.lease_owner, record.epoch, record.last_seq) == (f"w{n}", 1, 2)
    finally:
        for store in opened:
            await store.close()


@pytest.mark.postgres
async def test_postgres_workers_claim_disjoint_sets(postgres_url: str) -> None:
    await _claim_concurrently(postgres_url, stores=4, tasks=200)


async def test_sqlite_workers_on_one_file_claim_disjoint_sets(sqlite_url: str) -> None:
    await _claim_concurrently(sqlite_url, stores=2, tasks=200)


async def _race_idempotent_creates(url: str) -> None:
    first, second = await taskloom.open_store(url), await taskloom.open_store(url)
    try:
        for round_ in range(10):
            results = await asyncio.gather(
                first.create(_record(f"a{round_}", idempotency_key=f"k{round_}"), [_submitted()]),
                second.create(_record(f"b{round_}", idempotency_key=f"k{round_}"), [_submitted()]),
            )
            assert sorted(created for _, created in results) == [False, True]
            assert results[0][0] == results[1][0]
    finally:
        await first.close()
        await second.close()


@pytest.mark.postgres
async def test_postgres_stores_racing_on_an_idempotency_key_make_one_task(
    postgres_url: str,
) -> None:
    await _race_idempotent_creates(postgres_url)


async def test_sqlite_stores_racing_on_an_idempotency_key_make_one_task(sqlite_url: str) -> None:
    await _race_idempotent_creates(sqlite_url)


async def _work_serially(store: taskloom.Store, worker: str, order: dict[str, list[str]]) -> int:
    """Claim and complete tasks until none is left; check each key's tasks ran one at a time."""
    done = 0
    idle = 0
    while idle < 3:  # others may hold the last tasks of a key: look again before stopping
        claimed = await store.claim(worker, ["job"], limit=4, lease_seconds=_LONG)
        keys = [r.serial_key for r in claimed]
        assert len(set(keys)) == len(keys)  # at most one task of a key per claim
        idle = 0 if claimed else idle + 1
        for record in claimed:
            assert record.serial_key is not None
            tasks = order[record.serial_key]
            position = tasks.index(record.id)
            if position:  # the task before it ended before this one was claimed
                before = await _get(store, tasks[position - 1])
                assert before.state is _S.COMPLETED
            await asyncio.sleep(0)
            assert await store.apply(_move(record.id, _S.COMPLETED, epoch=1)) == 3
            done += 1
        await asyncio.sleep(0.005 if not claimed else 0)
    return done


async def _serial_keys_concurrently(url: str, stores: int) -> None:
    opened = [await taskloom.open_store(url) for _ in range(stores)]
    order: dict[str, list[str]] = {f"K{k}": [] for k in range(5)}
    try:
        for i in range(40):
            key = f"K{i % 5}"
            order[key].append(f"t{i:02}")
            await _submit(opened[0], f"t{i:02}", serial_key=key, created_ms=_T0 + i)
        done = await asyncio.gather(
            *(_work_serially(store, f"w{n}", order) for n, store in enumerate(opened))
        )
        assert sum(done) == 40
    finally:
        for store in opened:
            await store.close()


@pytest.mark.postgres
async def test_postgres_workers_keep_serial_keys_one_at_a_time(postgres_url: str) -> None:
    await _serial_keys_concurrently(postgres_url, stores=4)


async def test_sqlite_workers_keep_serial_keys_one_at_a_time(sqlite_url: str) -> None:
    await _serial_keys_concurrently(sqlite_url, stores=2)
