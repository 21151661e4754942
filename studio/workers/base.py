"""Running work off the GUI thread: QObject workers on QThreads, and errors turned into messages.

A worker never touches a widget. It emits signals carrying plain Python values and numpy arrays;
Qt queues them to the GUI thread. Every exception raised inside a worker is caught and emitted as
``failed(title, message)`` — what happened and what to do — so the window never dies from one.

Threads: ``Worker.run`` executes on the worker's QThread; everything else here on the GUI thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

log = logging.getLogger(__name__)

_ADVICE = {
    "AudioFileError": ("Could not read or write the audio file", "Check the path and that the format is WAV, FLAC, OGG or MP3."),
    "AudioDeviceError": (
        "The audio device is not available",
        "Pick another device in the device menus, or check that the sound server is running.",
    ),
    "CheckpointError": ("Could not load the model", "Pick a checkpoint made by Waveform Studio (NAME.safetensors + NAME.json)."),
    "FeatureMismatchError": ("The model and the audio do not match", "Use a model trained on the same feature profile."),
    "FileNotFoundError": ("File not found", "Check the path; the file may have moved."),
    "PermissionError": ("No permission", "Choose a place you may write to."),
    "MemoryError": ("Out of memory", "Close other takes or work on a shorter selection."),
    "MissingDependencyError": ("A package is missing", "Install what the message names, then try again."),
    "VoiceError": ("The voice cannot be used", "Build the voice again from a few minutes of one speaker's recordings."),
    "ConversionError": ("The conversion failed", "Try another source or target; clear speech works best."),
    "DatasetError": (
        "The training data cannot be used",
        "Pick a folder of audio files (WAV, FLAC, OGG, MP3), or train on the open takes.",
    ),
    "TrainingDiverged": ("Training diverged", "The last good checkpoint was kept; lower the learning rate and resume."),
    "TrainingError": ("Training could not run", "Check the data, the family and the steps, then try again."),
    "ValueError": ("Invalid settings", "Change the settings named in the message and try again."),
}


def describe_error(exc: BaseException) -> tuple[str, str]:
    """(title, message) for a person: the error text plus advice picked by exception type."""
    for cls in type(exc).__mro__:
        if cls.__name__ in _ADVICE:
            title, advice = _ADVICE[cls.__name__]
            return title, f"{exc}\n\n{advice}"
    return (
        "Something went wrong",
        f"{type(exc).__name__}: {exc}\n\nThe studio is still usable; the log has the details. "
        "Try again, or report this with the log.",
    )


class Relay(QObject):
    """Calls ``fn`` on the thread this object was created in, whichever thread emits the signal.

    Qt runs a plain Python callable (a lambda, a function, a method of a non-QObject) connected to a
    signal on the EMITTING thread; connecting ``Relay(fn).deliver`` instead queues the call to the
    relay's thread (the GUI thread when created there).
    """

    def __init__(self, fn: Callable[..., Any]) -> None:
        super().__init__()
        self._fn = fn

    def deliver(self, *args: Any) -> None:
        self._fn(*args)


class Worker(QObject):
    """Base class: subclasses implement ``work()``; ``run`` wraps it with error reporting.

    Signals (emitted on the worker thread, delivered queued to receivers on the GUI thread):
    ``failed(title, message)`` when ``work`` raised; ``done()`` always, last. Connect callables that
    are not QObject methods with ``connect_gui`` so they run on the GUI thread.
    """

    failed = Signal(str, str)
    done = Signal()

    def __init__(self) -> None:
        super().__init__()
        self._relays: list[Relay] = []

    def connect_gui(self, signal: Any, fn: Callable[..., Any]) -> None:
        """Run ``fn(*args)`` on the calling thread (call this on the GUI thread) when ``signal`` fires."""
        relay = Relay(fn)
        self._relays.append(relay)
        signal.connect(relay.deliver)

    def work(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    @Slot()
    def run(self) -> None:
        try:
            self.work()
        except Exception as exc:  # noqa: BLE001 - every error must reach the user, not kill the app
            log.exception("%s failed", type(self).__name__)
            self.failed.emit(*describe_error(exc))
        finally:
            self.done.emit()


class FunctionWorker(Worker):
    """Runs ``fn(*args, **kwargs)`` on a worker thread and emits ``result(value)``."""

    result = Signal(object)

    def __init__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self._fn, self._args, self._kwargs = fn, args, kwargs

    def work(self) -> None:
        self.result.emit(self._fn(*self._args, **self._kwargs))


_running: dict[int, tuple[QThread, Worker]] = {}


def start_worker(worker: Worker) -> QThread:
    """Move ``worker`` to a new QThread and start ``worker.run`` there.

    The pair is kept alive until the thread ends, then released. Call on the GUI thread.
    """
    thread = QThread()
    thread.setObjectName(type(worker).__name__)
    worker.moveToThread(thread)
    thread.started.connect(worker.run)
    worker.done.connect(thread.quit)
    key = id(thread)
    _running[key] = (thread, worker)

    def release() -> None:
        pair = _running.pop(key, None)
        if pair is not None:
            pair[0].wait(2000)

    worker.connect_gui(thread.finished, release)
    thread.start()
    return thread


def running_workers() -> list[Worker]:
    """Workers whose threads are still running (for shutdown and tests)."""
    return [w for (t, w) in _running.values() if t.isRunning()]


def wait_for_workers(timeout_ms: int = 5000) -> bool:
    """Wait for every worker thread to end; True when all did."""
    ok = True
    for thread, _ in list(_running.values()):
        ok = thread.wait(timeout_ms) and ok
    return ok
