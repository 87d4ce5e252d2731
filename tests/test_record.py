"""`TaskRecord.copy`, written out by hand for speed, must copy every field."""

from __future__ import annotations

from dataclasses import fields

from taskloom._record import TaskRecord
from taskloom.states import TaskState


def test_copy_copies_every_field_and_shares_no_progress() -> None:
    record = TaskRecord(id="t1", name="job")
    # a distinct value in every field, so that a field left out of `copy` shows
    for i, f in enumerate(fields(TaskRecord)):
        if f.name == "state":
            value: object = TaskState.INPUT_REQUIRED
        elif f.name == "progress":
            value = {"step": i}
        elif f.type in ("int", "int | None"):
            value = 1000 + i
        else:
            value = f"value-{i}"
        setattr(record, f.name, value)
    copy = record.copy()
    assert copy is not record
    for f in fields(TaskRecord):
        assert getattr(copy, f.name) == getattr(record, f.name), f.name
    assert copy.progress is not record.progress
    copy.progress["more"] = 1
    assert "more" not in record.progress
