"""Deadlock detection: dump every thread's stack and abort when a training step stalls."""
import logging
import os
from queue import Queue, Empty
import signal
import sys
import threading
import traceback
import typing as tp

logger = logging.getLogger(__name__)


class DeadlockDetect:
    """Watchdog thread expecting `update(stage)` calls at least every `timeout` seconds.

    If none arrives in time, all stacks are logged and the process is killed, so that a
    hung distributed job fails (and gets rescheduled) instead of holding its GPUs forever.
    """
    def __init__(self, use: bool = False, timeout: float = 120.):
        self.use = use
        self.timeout = timeout
        self._queue: Queue = Queue()
        self._thread: tp.Optional[threading.Thread] = None

    def update(self, stage: str) -> None:
        if self.use:
            self._queue.put(stage)

    def __enter__(self) -> "DeadlockDetect":
        if self.use:
            self._thread = threading.Thread(target=self._detector_thread, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, exc_type: tp.Any, exc_val: tp.Any, exc_tb: tp.Any) -> None:
        if self.use and self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def _detector_thread(self) -> None:
        logger.debug("Deadlock detector started")
        last_stage = "init"
        while True:
            try:
                stage = self._queue.get(timeout=self.timeout)
            except Empty:
                break
            if stage is None:
                logger.debug("Exiting deadlock detector thread")
                return
            last_stage = stage
        logger.error("Deadlock detector timed out, last stage was %s", last_stage)
        for th in threading.enumerate():
            print(th, file=sys.stderr)
            frame = sys._current_frames().get(th.ident) if th.ident is not None else None
            if frame is not None:
                traceback.print_stack(frame)
            print(file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
