"""Flusher, pace: short pauses that hand the GIL to the threads serving predictions.

A flusher step runs with the GIL, like any Python thread. A thread that wants the GIL while
the step holds it (a server's event loop with a request to answer) waits until the step lets
it go: at a blocking call, or when CPython's switch interval (5 ms) has run out and it asks
the step to drop it. Releasing the GIL and taking it straight back is not enough: the waiting
thread has to wake first, and the releasing one wins that race. So between its phases (and
between slices of its long C calls) the step checks how long it has held the GIL and, past
``every_s``, sleeps ``pause_s``: the waiting thread takes the GIL meanwhile, and the step
resumes after it. A step longer than ``every_s`` thus holds the GIL little longer than that at
a time (but for one long call: the store write's block encoding, ~3-4 ms every 5 s in a
loaded server), and the flusher can run less often (fewer, larger steps cost less CPU per
prediction) without lengthening what a request may wait for.

Cost: a pause is one ``clock_nanosleep`` (a few microseconds of CPU); the wait belongs to the
flusher, which has nothing else to do. A caller thread that never lets the GIL go (a CPU-bound
loop of predictions) keeps it for the whole 5 ms switch interval after each pause, so a step
can take ten times its CPU in wall time: the pauses stop once the step has run for a quarter
of ``flush_interval_s`` (its budget), and a step that must catch up holds the GIL as it did
without pauses. When (``MonitorConfig.flush_hold_s``): ``leanml serve`` pauses every 0.5 ms,
where the event loop lets the GIL go at every turn, so the step gets it back quickly.
Elsewhere pauses are off by default: in a CPU-bound loop each pause lets the caller run a whole
switch interval, which evicts the step's data from the caches (in a predict loop with pauses
the flusher's CPU did not differ beyond the noise, so the default was left off). A forced
flush (``flush()``) never pauses: the thread running it is the one waiting for it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

__all__ = ["Pacer"]


class Pacer:
    """Pause (``sleep(pause_s)``) when ``every_s`` or more have passed since the last pause
    or :meth:`start`, until the step has run for its budget; ``every_s`` None: never."""

    def __init__(
        self,
        every_s: float | None,
        pause_s: float = 0.0001,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.every_s = every_s
        self.pause_s = pause_s
        self.clock = clock
        self.sleep = sleep
        self.since = self.until = clock()
        self.pausing = True
        self.pauses = 0

    def start(self, pausing: bool = True, budget_s: float = math.inf) -> None:
        """A step begins: the time it holds the GIL counts from now, and it pauses for
        ``budget_s`` at most (then it runs to its end). ``pausing`` false: this step does not
        pause (a forced flush: its caller waits for it, and the flusher thread waits for the
        step's lock)."""
        self.pausing = pausing
        self.since = self.clock()
        self.until = self.since + budget_s

    def __call__(self) -> None:
        """Pause if the step has held the GIL for ``every_s`` since the last pause."""
        every = self.every_s  # read once: a run-time change may set it to None mid-step
        if not self.pausing or every is None:
            return
        now = self.clock()
        if now - self.since < every:
            return
        if now >= self.until:  # over budget: the step runs to its end
            self.pausing = False
            return
        self.sleep(self.pause_s)
        self.pauses += 1
        self.since = self.clock()
