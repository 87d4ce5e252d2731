"""The `Store` contract, run on every store (memory, SQLite, PostgreSQL).

These tests drive the stores directly with the internal records, so that each store is held
to the same rules whatever the runtime above it does: conditional writes, contiguous `seq`,
absorbing terminal states, shallow progress merges, keyset pagination and retention.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC
from typing import Any

import pytest

import taskloom
from taskloom._record import Change, NewEvent, TaskQuery, TaskRecord
from taskloom.states import TERMINAL_STATES, TaskState, sources

_S = TaskState
_T0 = 1_700_000_000_000
_PROGRESS_FROM = (_S.WORKING.value, _S.INPUT_REQUIRED.value)
_KIND = {_S.WORKING: "started"}


def _record(task_id: str, **fields: Any) -> TaskRecord:
    fields.setdefault("name", "job")
    fields.setdefault("created_ms", _T0)
    fields.setdefault("updated_ms", fields["created_ms"])
    fields.setdefault("retention_ms", 60_000)
    return TaskRecord(id=task_id, **fields)


def _submitted(at_ms: int = _T0) -> NewEvent:
    return NewEvent(kind="submitted", data='{"name":"job"}', at_ms=at_ms)


def _move(task_id: str, target: TaskState, at_ms: int, **fields: Any) -> Change:
    data: str = fields.pop("data", "{}")
    return Change(
        task_id=task_id,
        event=NewEvent(kind=_KIND.get(target, target.value), data=data, at_ms=at_ms),
        from_states=sources(target),
        to_state=target,
        **fields,
    )


def _progress(task_id: str, patch: dict[str, Any], at_ms: int) -> Change:
    text = json.dumps(patch, ensure_ascii=False, separators=(",", ":"))
    return Change(
        task_id=task_id,
        event=NewEvent(kind="progressed", data=f'{{"progress":{text}}}', at_ms=at_ms),
        from_states=_PROGRESS_FROM,
        progress=patch,
        progress_json=text,
    )


async def _working(store: taskloom.Store, task_id: str, **fields: Any) -> TaskRecord:
    await store.create(_record(task_id, **fields), [_submitted()])
    assert await store.apply(_move(task_id, _S.WORKING, _T0 + 1)) == 2
    record = await store.get(task_id)
    assert record is not None
    return record


async def _ended(store: taskloom.Store, task_id: str, state: TaskState, **fields: Any) -> None:
    await _working(store, task_id, **fields)
    assert await store.apply(_move(task_id, state, _T0 + 2, reason="why")) == 3


# -- create ---------------------------------------------------------------------------------


async def test_create_stores_the_record_and_numbers_its_events(store: taskloom.Store) -> None:
    record = _record("t1", owner="ann", payload='{"q":1}', expires_ms=_T0 + 5_000)
    events = [_submitted(), NewEvent(kind="started", data="{}", at_ms=_T0)]
    stored, created = await store.create(record, events)
    assert created is True
    assert stored.last_seq == 2
    assert (stored.id, stored.name, stored.owner, stored.payload) == ("t1", "job", "ann", '{"q":1}')
    assert stored.expires_ms == _T0 + 5_000
    assert await store.get("t1") == stored
    assert [(e.seq, e.kind) for e in await store.read_events("t1")] == [
        (1, "submitted"),
        (2, "started"),
    ]


async def test_create_with_a_taken_id_returns_the_existing_task_and_writes_nothing(
    store: taskloom.Store,
) -> None:
    first, created = await store.create(_record("t1", payload='"first"'), [_submitted()])
    assert created
    other = _record("t1", name="other", owner="bob", payload='"second"', created_ms=_T0 + 9)
    existing, created = await store.create(other, [_submitted(), _submitted()])
    assert created is False
    assert existing == first
    assert await store.get("t1") == first
    assert [e.seq for e in await store.read_events("t1")] == [1]


async def test_get_of_an_unknown_task_is_none(store: taskloom.Store) -> None:
    assert await store.get("nope") is None


# -- apply ----------------------------------------------------------------------------------


async def test_apply_numbers_events_contiguously_from_one(store: taskloom.Store) -> None:
    await store.create(_record("t1"), [_submitted()])
    seqs = [await store.apply(_move("t1", _S.WORKING, _T0 + 1))]
    for i in range(5):
        seqs.append(await store.apply(_progress("t1", {"i": i}, _T0 + 2 + i)))
    seqs.append(await store.apply(_move("t1", _S.COMPLETED, _T0 + 10, result="42")))
    assert seqs == [2, 3, 4, 5, 6, 7, 8]
    events = await store.read_events("t1")
    assert [e.seq for e in events] == list(range(1, 9))
    assert {e.task_id for e in events} == {"t1"}
    record = await store.get("t1")
    assert record is not None
    assert record.last_seq == 8


async def test_apply_records_the_change(store: taskloom.Store) -> None:
    await store.create(_record("t1", retention_ms=5_000), [_submitted()])
    await store.apply(_move("t1", _S.WORKING, _T0 + 10))
    started = await store.get("t1")
    assert started is not None
    assert (started.state, started.started_ms, started.updated_ms) == (
        _S.WORKING,
        _T0 + 10,
        _T0 + 10,
    )
    assert started.ended_ms is None and started.purge_ms is None
    error = '{"type":"ValueError","message":"boom"}'
    await store.apply(_move("t1", _S.FAILED, _T0 + 20, reason="error", error=error))
    ended = await store.get("t1")
    assert ended is not None
    assert (ended.state, ended.reason, ended.error, ended.result) == (
        _S.FAILED,
        "error",
        error,
        None,
    )
    assert (ended.started_ms, ended.ended_ms, ended.updated_ms) == (_T0 + 10, _T0 + 20, _T0 + 20)
    assert ended.purge_ms == _T0 + 20 + 5_000


async def test_apply_is_refused_when_the_state_does_not_match(store: taskloom.Store) -> None:
    stored, _ = await store.create(_record("t1"), [_submitted()])
    assert await store.apply(_move("t1", _S.COMPLETED, _T0 + 1, result="1")) is None
    assert await store.apply(_move("t1", _S.INPUT_REQUIRED, _T0 + 1)) is None
    assert await store.apply(_progress("t1", {"a": 1}, _T0 + 1)) is None
    assert await store.get("t1") == stored
    assert [e.seq for e in await store.read_events("t1")] == [1]


async def test_apply_to_a_missing_task_is_refused(store: taskloom.Store) -> None:
    assert await store.apply(_move("ghost", _S.WORKING, _T0)) is None
    assert await store.apply(_progress("ghost", {"a": 1}, _T0)) is None
    assert await store.get("ghost") is None
    assert await store.read_events("ghost") == []


@pytest.mark.parametrize("end", sorted(TERMINAL_STATES))
async def test_terminal_records_never_change_again(store: taskloom.Store, end: TaskState) -> None:
    await _ended(store, "t1", end, result='"r"' if end is _S.COMPLETED else None)
    before = await store.get("t1")
    assert before is not None and before.state is end
    for target in TaskState:
        if target is _S.SUBMITTED:
            continue
        assert await store.apply(_move("t1", target, _T0 + 50, reason="again")) is None
    assert await store.apply(_progress("t1", {"late": True}, _T0 + 50)) is None
    # even a caller that names every state cannot move a terminal record
    everything = tuple(s.value for s in TaskState)
    for target in (_S.WORKING, _S.COMPLETED, _S.FAILED, None):
        change = Change(
            task_id="t1",
            event=NewEvent(kind="progressed", data="{}", at_ms=_T0 + 60),
            from_states=everything,
            to_state=target,
            reason="forced",
            progress={"forced": True},
            progress_json='{"forced":true}',
        )
        assert await store.apply(change) is None
    assert await store.get("t1") == before
    assert [e.seq for e in await store.read_events("t1")] == [1, 2, 3]


async def test_first_terminal_change_wins(store: taskloom.Store) -> None:
    await _working(store, "t1")
    results = await asyncio.gather(
        store.apply(_move("t1", _S.COMPLETED, _T0 + 5, result='"done"')),
        store.apply(_move("t1", _S.CANCELLED, _T0 + 5, reason="stop")),
        store.apply(_move("t1", _S.FAILED, _T0 + 5, reason="error")),
    )
    assert [r for r in results if r is not None] == [3]
    record = await store.get("t1")
    assert record is not None
    winner = (_S.COMPLETED, _S.CANCELLED, _S.FAILED)[[r is not None for r in results].index(True)]
    assert record.state is winner
    assert [e.kind for e in await store.read_events("t1")][-1] == winner.value


async def test_progress_merge_is_shallow(store: taskloom.Store) -> None:
    await _working(store, "t1")
    assert await store.apply(_progress("t1", {"a": {"x": 1, "y": 2}, "b": [1, 2]}, _T0 + 5))
    assert await store.apply(_progress("t1", {"a": {"z": 3}, "c": None}, _T0 + 7))
    record = await store.get("t1")
    assert record is not None
    assert record.progress == {"a": {"z": 3}, "b": [1, 2], "c": None}
    assert record.last_progress_ms == _T0 + 7
    assert record.state is _S.WORKING


async def test_progress_merge_of_scalars_and_lists_is_shallow(store: taskloom.Store) -> None:
    # patches without object or null values take the SQLite store's `json_patch` path
    patches: list[dict[str, Any]] = [
        {"b": 1, "a": {"x": 1}, "": "empty key", 'q"uote': "\\", "back\\slash": [1, {"y": 2}]},
        {"a": [3, None], "b": "two", "ünï ✓": 2.5, "big": 2**70, "t": True, "f": False},
        {"a": "flat now", "n": -0.0, "e": 0.125, "s": 'é "x" \n \u0001 🚀', "": 0},
    ]
    await _working(store, "t1")
    expected: dict[str, Any] = {}
    for i, patch in enumerate(patches):
        assert await store.apply(_progress("t1", patch, _T0 + 5 + i))
        expected.update(patch)
        record = await store.get("t1")
        assert record is not None
        assert record.progress == expected
        if not store.url.startswith("postgresql"):  # JSONB orders keys its own way
            assert list(record.progress) == list(expected)
    progressed = (await store.read_events("t1"))[2:]
    assert [e.progress for e in progressed if isinstance(e, taskloom.TaskProgressed)] == patches


async def test_state_changes_keep_progress(store: taskloom.Store) -> None:
    await _working(store, "t1")
    await store.apply(_progress("t1", {"step": 1}, _T0 + 5))
    await store.apply(_move("t1", _S.COMPLETED, _T0 + 6, result="null"))
    record = await store.get("t1")
    assert record is not None
    assert record.progress == {"step": 1}
    assert record.last_progress_ms == _T0 + 5


# -- reading events -------------------------------------------------------------------------


async def test_read_events_after_and_limit(store: taskloom.Store) -> None:
    await _working(store, "t1")
    for i in range(4):
        await store.apply(_progress("t1", {"i": i}, _T0 + 10 + i))
    assert [e.seq for e in await store.read_events("t1")] == [1, 2, 3, 4, 5, 6]
    assert [e.seq for e in await store.read_events("t1", after=2, limit=3)] == [3, 4, 5]
    assert [e.seq for e in await store.read_events("t1", after=5)] == [6]
    assert await store.read_events("t1", after=6) == []
    assert [e.seq for e in await store.read_events("t1", limit=1)] == [1]
    assert await store.read_events("unknown") == []


async def test_read_events_returns_typed_events(store: taskloom.Store) -> None:
    await _working(store, "t1")
    await store.apply(_progress("t1", {"n": 1}, _T0 + 5))
    data = '{"reason":"error","error_type":"KeyError","message":"k"}'
    await store.apply(_move("t1", _S.FAILED, _T0 + 9, reason="error", data=data))
    submitted, started, progressed, failed = await store.read_events("t1")
    assert isinstance(submitted, taskloom.TaskSubmitted) and submitted.name == "job"
    assert isinstance(started, taskloom.TaskStarted)
    assert isinstance(progressed, taskloom.TaskProgressed) and progressed.progress == {"n": 1}
    assert isinstance(failed, taskloom.TaskFailed)
    assert (failed.reason, failed.error_type, failed.message) == ("error", "KeyError", "k")
    assert failed.at.tzinfo is UTC
    assert int(failed.at.timestamp() * 1000) == _T0 + 9


async def test_heads(store: taskloom.Store) -> None:
    await store.create(_record("a"), [_submitted()])
    await _ended(store, "b", _S.CANCELLED)
    heads = await store.heads(["a", "b", "missing"])
    assert heads == {"a": (_S.SUBMITTED, 1), "b": (_S.CANCELLED, 3)}
    assert await store.heads([]) == {}


async def test_wait_for_change_returns_within_its_timeout(store: taskloom.Store) -> None:
    async with asyncio.timeout(5):
        await store.wait_for_change(0.02)
        await store.wait_for_change(0.02)


# -- listing --------------------------------------------------------------------------------


async def _fill(store: taskloom.Store) -> None:
    rows: list[tuple[str, str | None, str, str | None]] = [
        ("t0", "ann", "summarise", None),
        ("t1", "bob", "summarise", None),
        ("t2", "ann", "translate", "t0"),
        ("t3", None, "summarise", "t0"),
        ("t4", "ann", "summarise", None),
        ("t5", "bob", "translate", None),
    ]
    for i, (task_id, owner, name, parent_id) in enumerate(rows):
        record = _record(task_id, owner=owner, name=name, parent_id=parent_id, created_ms=_T0 + i)
        await store.create(record, [_submitted(_T0 + i)])
    await store.apply(_move("t1", _S.WORKING, _T0 + 10))
    await store.apply(_move("t2", _S.WORKING, _T0 + 10))
    await store.apply(_move("t2", _S.COMPLETED, _T0 + 11, result="1"))
    await store.apply(_move("t4", _S.CANCELLED, _T0 + 11, reason="x"))


async def _ids(store: taskloom.Store, **query: Any) -> list[str]:
    return [r.id for r in await store.list(TaskQuery(**query))]


async def test_list_is_newest_first(store: taskloom.Store) -> None:
    await _fill(store)
    assert await _ids(store) == ["t5", "t4", "t3", "t2", "t1", "t0"]
    assert await _ids(store, limit=2) == ["t5", "t4"]


async def test_list_filters(store: taskloom.Store) -> None:
    await _fill(store)
    assert await _ids(store, states=("submitted",)) == ["t5", "t3", "t0"]
    assert await _ids(store, states=("working", "completed")) == ["t2", "t1"]
    assert await _ids(store, owner="ann") == ["t4", "t2", "t0"]
    assert await _ids(store, name="translate") == ["t5", "t2"]
    assert await _ids(store, parent_id="t0") == ["t3", "t2"]
    assert await _ids(store, created_after_ms=_T0 + 3) == ["t5", "t4"]
    assert await _ids(store, owner="ann", name="summarise", states=("submitted",)) == ["t0"]
    assert await _ids(store, owner="nobody") == []


async def test_list_pages_by_keyset(store: taskloom.Store) -> None:
    await _fill(store)
    pages: list[list[str]] = []
    before: tuple[int, str] | None = None
    while True:
        page = await store.list(TaskQuery(limit=4, before=before))
        pages.append([r.id for r in page])
        if len(page) < 4:
            break
        before = (page[-1].created_ms, page[-1].id)
    assert pages == [["t5", "t4", "t3", "t2"], ["t1", "t0"]]
    assert await _ids(store, before=(_T0 + 2, "t2"), owner="ann") == ["t0"]


async def test_list_breaks_ties_on_creation_time_by_id(store: taskloom.Store) -> None:
    for task_id in ("b", "d", "a", "c"):
        await store.create(_record(task_id), [_submitted()])
    assert await _ids(store) == ["d", "c", "b", "a"]
    assert await _ids(store, before=(_T0, "c")) == ["b", "a"]
    assert await _ids(store, before=(_T0, "c"), limit=1) == ["b"]


# -- clocks: overdue and purge --------------------------------------------------------------


async def test_overdue_lists_unfinished_tasks_past_their_time(store: taskloom.Store) -> None:
    await store.create(_record("due", expires_ms=_T0 + 100), [_submitted()])
    await _working(store, "due-working", expires_ms=_T0 + 50)
    await store.create(_record("later", expires_ms=_T0 + 10_000), [_submitted()])
    await store.create(_record("never"), [_submitted()])
    await _ended(store, "ended", _S.COMPLETED, expires_ms=_T0 + 10)
    assert sorted(await store.overdue(_T0 + 100)) == ["due", "due-working"]
    assert await store.overdue(_T0 + 99) == ["due-working"]
    assert len(await store.overdue(_T0 + 100, limit=1)) == 1
    assert await store.overdue(_T0) == []


async def test_purge_deletes_ended_tasks_and_their_events(store: taskloom.Store) -> None:
    await _ended(store, "old", _S.COMPLETED, retention_ms=10)
    await _ended(store, "old2", _S.FAILED, retention_ms=10)
    await _ended(store, "kept", _S.COMPLETED, retention_ms=1_000_000)
    await _working(store, "running")
    assert await store.purge(_T0 + 2 + 9) == 0
    assert await store.purge(_T0 + 2 + 10, limit=1) == 1
    assert await store.purge(_T0 + 2 + 10) == 1
    assert await store.purge(_T0 + 2 + 10) == 0
    for gone in ("old", "old2"):
        assert await store.get(gone) is None
        assert await store.read_events(gone) == []
    assert await store.heads(["old", "old2", "kept", "running"]) == {
        "kept": (_S.COMPLETED, 3),
        "running": (_S.WORKING, 2),
    }
    assert await _ids(store) == ["running", "kept"]
    # a purged id is free again
    _, created = await store.create(_record("old"), [_submitted()])
    assert created
    assert [e.seq for e in await store.read_events("old")] == [1]


# -- JSON -----------------------------------------------------------------------------------

_TRICKY: dict[str, Any] = {
    "text": 'héllo ✓ 日本語 🚀 "quoted" back\\slash\nnew line\ttab \u0001',
    "nested": {"list": [1, 2.5, -3, True, None, {"deep": ["é", {"deeper": []}]}]},
    "ünïcode-kéy": "",
    "big": 2**53,
}


async def test_json_text_round_trips(store: taskloom.Store) -> None:
    payload = json.dumps(_TRICKY, ensure_ascii=False, separators=(",", ":"))
    await _working(store, "t1", payload=payload, owner="ñandú", name="résumé ✓")
    await store.apply(_progress("t1", _TRICKY, _T0 + 5))
    result = json.dumps([_TRICKY, "🚀"], ensure_ascii=False, separators=(",", ":"))
    await store.apply(
        _move("t1", _S.COMPLETED, _T0 + 6, result=result, data=f'{{"result":{result}}}')
    )
    record = await store.get("t1")
    assert record is not None
    assert (record.payload, record.result) == (payload, result)
    assert json.loads(record.payload) == _TRICKY
    assert (record.owner, record.name) == ("ñandú", "résumé ✓")
    assert record.progress == _TRICKY
    events = await store.read_events("t1")
    progressed, completed = events[2], events[3]
    assert isinstance(progressed, taskloom.TaskProgressed)
    assert progressed.progress == _TRICKY
    assert isinstance(completed, taskloom.TaskCompleted)
    assert completed.result == [_TRICKY, "🚀"]
    [listed] = await store.list(TaskQuery(owner="ñandú"))
    assert listed == record


async def test_error_json_round_trips(store: taskloom.Store) -> None:
    error = json.dumps({"type": "Ошибка", "message": 'ça a échoué: «nested» {"x": 1}'})
    await _working(store, "t1")
    await store.apply(_move("t1", _S.FAILED, _T0 + 5, reason="error", error=error))
    record = await store.get("t1")
    assert record is not None
    assert record.error == error
