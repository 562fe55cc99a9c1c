"""Console progress of a long worker loop: a line now and then from rank 0 saying where the
loop is, how fast it goes and how long is left. Ray Train forwards a worker's stdout to the
driver's console, so this is what a user watching `stilts-ds pipeline` or `ray submit` sees
between checkpoints (TensorBoard has the curves).

    progress = Progress("phase 1", total=5000, start=resumed_step, enabled=rank == 0)
    progress.update(step, "loss mnli 0.712")     # prints at most every 30 s, and at the end

A line: ``[phase 1] step 1200/5000 (24%) | 3.4 steps/s | 5m50s elapsed, 18m38s left | loss ...``.
"""
from __future__ import annotations

import sys
import time
from typing import Callable, TextIO


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class Progress:
    def __init__(self, label: str, total: int, *, start: int = 0, every_s: float = 30.0, enabled: bool = True,
                 unit: str = "step", clock: Callable[[], float] = time.monotonic, stream: TextIO | None = None):
        self.label, self.total, self.start, self.unit = label, int(total), int(start), unit
        self.every_s, self.enabled, self.clock = every_s, enabled, clock
        self.stream = stream
        self.t0 = clock()
        self.last = None

    def line(self, done: int, extra: str = "") -> str:
        elapsed = self.clock() - self.t0
        rate = (done - self.start) / elapsed if elapsed > 0 and done > self.start else None
        pct = f" ({100 * done / self.total:.0f}%)" if self.total else ""
        parts = [f"[{self.label}] {self.unit} {done}/{self.total}{pct}"]
        if rate:
            left = (self.total - done) / rate
            parts += [f"{rate:.2f} {self.unit}s/s", f"{_duration(elapsed)} elapsed, {_duration(left)} left"]
        if extra:
            parts.append(extra)
        return " | ".join(parts)

    def update(self, done: int, extra: str = "") -> bool:
        """Print a line if ``every_s`` has passed since the last one, or at the last step."""
        if not self.enabled:
            return False
        now = self.clock()
        if done < self.total and self.last is not None and now - self.last < self.every_s:
            return False
        self.last = now
        print(self.line(done, extra), file=self.stream or sys.stdout, flush=True)
        return True
