"""Training progress without a terminal: a line every tenth of the run and at least every 30 s."""

from __future__ import annotations

import io
import sys

from advgen import engine


def _progress(monkeypatch, total=1000):
    err = io.StringIO()  # not a terminal, as under CI or nohup
    monkeypatch.setattr(sys, "stderr", err)
    bar = engine.Progress(total, 0, True, "train x")
    return bar, err


def test_a_slow_run_without_terminal_writes_a_line_every_30_seconds(monkeypatch):
    bar, err = _progress(monkeypatch)
    clock = [bar.t0]
    monkeypatch.setattr(engine.time, "perf_counter", lambda: clock[0])
    for step in range(1, 40):  # 2 s a step: a step far from any tenth of the run
        clock[0] += 2.0
        bar.tick(step)
    lines = err.getvalue().splitlines()
    # 78 s in: lines at about 30 s and 60 s, none during the quiet first seconds
    assert len(lines) == 2, lines
    assert lines[0].startswith("train x 15/1000") and "elapsed" in lines[0]
    bar.update(40, {"loss_d": 1.25, "loss_g": 0.5})  # between tenths: no line of its own
    assert len(err.getvalue().splitlines()) == 2
    clock[0] += 31.0
    bar.tick(41)  # the next timed line carries the last losses
    assert err.getvalue().splitlines()[-1].startswith("train x 41/1000") and "loss_d=1.250" in err.getvalue()


def test_a_fast_run_writes_tenths_not_every_tick(monkeypatch):
    bar, err = _progress(monkeypatch)
    clock = [bar.t0]
    monkeypatch.setattr(engine.time, "perf_counter", lambda: clock[0])
    for step in range(1, 1001):
        clock[0] += 0.0101  # not 0.01: 300 sums of 0.01 from an arbitrary t0 can fall a hair short of 3 s
        bar.tick(step)
        if step % 50 == 0:
            bar.update(step, {"loss_d": 1.0})
    lines = err.getvalue().splitlines()
    # quiet for the first 3 s, then one line per tenth: 300, 400, ..., 1000
    assert [line.split()[2] for line in lines] == [f"{s}/1000" for s in range(300, 1001, 100)], lines
