"""The progress event, its helpers, and the command line's one place that draws events as bars."""

from dataclasses import FrozenInstanceError

import pytest
from rich.progress import Progress as RichProgress

from tans.cli._progress import EventBars, bar_view
from tans.progress import ProgressEvent, emit, prefixed


def test_an_event_is_frozen_hashable_and_carries_its_extra_read_only():
    seen = []
    emit(seen.append, "build", 2, 5, "digits-0-4", failure=None)
    (event,) = seen
    assert event == ProgressEvent("build", 2, 5, "digits-0-4", {"failure": None})
    assert hash(event) == hash(ProgressEvent("build", 2, 5, "digits-0-4"))
    with pytest.raises(FrozenInstanceError):
        event.done = 3
    with pytest.raises(TypeError):
        event.extra["failure"] = "oops"
    assert ProgressEvent("plan", 0, None).extra == {} and ProgressEvent("plan", 0, None).message is None
    emit(None, "build", 1, 1)  # no callback: nothing to call


def test_prefixed_puts_the_step_before_the_stage_and_keeps_the_rest():
    seen = []
    prefixed(seen.append, "zoo")(ProgressEvent("plan", 3, 7, "3 already built", {"a": 1}))
    assert seen == [ProgressEvent("zoo/plan", 3, 7, "3 already built", {"a": 1})]
    assert prefixed(None, "zoo") is None


def test_event_bars_draw_one_bar_per_name_and_start_a_plan_at_zero():
    bar = RichProgress(disable=True)
    bars = EventBars(bar)
    bars(ProgressEvent("plan", 4, 10, "4 already built"))  # 4 done before this run; 10 to run now
    (task,) = bar.tasks
    assert (task.description, task.completed, task.total, task.fields["status"]) == ("plan", 0, 10, "4 already built")
    bars(ProgressEvent("probe", 1, None))
    bars(ProgressEvent("probe", 2, 3, "abc"))
    assert [(t.description, t.completed, t.total, t.fields["status"]) for t in bar.tasks][1] == ("probe", 2, 3, "abc")
    bars.show("probe", status="done")  # unchanged but the status
    assert (bar.tasks[1].completed, bar.tasks[1].total, bar.tasks[1].fields["status"]) == (2, 3, "done")

    merged = EventBars(RichProgress(disable=True),
                       lambda e: None if e.stage == "skip" else {**bar_view(e), "name": "all", "status": ""})
    merged(ProgressEvent("skip", 1, 1, "drawn nowhere"))
    merged(ProgressEvent("a", 1, 2, "no status"))
    merged(ProgressEvent("b", 2, 2))
    assert [(t.description, t.completed, t.fields["status"]) for t in merged.bar.tasks] == [("all", 2, "")]
