"""Wall time of a job that may be resumed: what earlier invocations spent, plus this one's.

    with WallClock(out / "wall_clock.json") as clock:   # reads what earlier invocations spent
        ...
        clock.total()     # seconds over every invocation, this one included
        clock.this_run()  # seconds of this invocation

The file holds ``{"seconds_total": …, "invocations": …}`` and is rewritten atomically every
``every`` seconds by a background thread and when the block ends (normally or by an exception), so
the time of an invocation that was killed counts up to its last write. Why: a resumed ``demo``
reported only the resume's wall time as the demo's, and gave the resume its whole budget again.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from r1searcher.util.files import write_atomic


class WallClock:
    """Seconds spent by a job over its invocations, kept in a small JSON file (see the module doc)."""

    def __init__(self, path: str | Path, every: float = 30.0):
        self.path = Path(path)
        self.every = every
        prior = _read(self.path)
        self.before = float(prior.get("seconds_total", 0.0))
        self.invocations = int(prior.get("invocations", 0)) + 1
        self._t0 = time.perf_counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def this_run(self) -> float:
        return time.perf_counter() - self._t0

    def total(self) -> float:
        return self.before + self.this_run()

    def save(self) -> None:
        """Write the total so far (atomically: a kill mid-write leaves the previous file)."""
        with self._lock:
            data = {"seconds_total": round(self.total(), 2), "invocations": self.invocations}
            write_atomic(self.path, json.dumps(data) + "\n")

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.save()
            except OSError:
                pass  # a full disk must not kill the job; the write at the end reports it

    def __enter__(self) -> WallClock:
        self.save()
        self._thread = threading.Thread(target=self._beat, name="wall-clock", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, typ, exc, tb) -> bool:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            self.save()
        except OSError:
            if exc is None:
                raise
            # the error that ended the block is the one to report
        return False


def _read(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
        float(data["seconds_total"]), int(data["invocations"])
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"{path}: unreadable wall-clock record (expected {{\"seconds_total\": S, \"invocations\": N}}); "
                         f"delete it to count from zero") from None
    return data
