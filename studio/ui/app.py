"""Starting the window: ``run_app(argv)`` is what ``studio`` (no subcommand) calls.

Also installs an exception hook so an error raised in any slot on the GUI thread becomes a message
in the window instead of ending the program.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback

from PySide6.QtWidgets import QApplication

from studio import __version__
from studio.ui import settings as settings_store
from studio.ui import theme

log = logging.getLogger(__name__)


def create_application(argv: list[str] | None = None) -> QApplication:
    """The QApplication (reused when one exists), named and themed."""
    os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")
    app = QApplication.instance() or QApplication(list(argv or [sys.argv[0]]))
    app.setOrganizationName(settings_store.ORGANIZATION)
    app.setOrganizationDomain(settings_store.ORGANIZATION_DOMAIN)
    app.setApplicationName(settings_store.APPLICATION)
    app.setApplicationDisplayName("Waveform Studio")
    app.setApplicationVersion(__version__)
    theme.apply_theme(app)
    collect_garbage_on_gui_thread()
    return app


_gui_thread_gc = None


def collect_garbage_on_gui_thread() -> None:
    """Run Python's cycle collector only on the GUI thread, from a timer.

    Left automatic, the collector runs in whichever thread happens to allocate (a worker loading a
    model, say) and may destroy Qt objects there, which crashes Qt (seen: a segfault while a worker
    built a WaveNet). pyqtgraph's collector disables automatic collection and collects from a QTimer."""
    global _gui_thread_gc
    if _gui_thread_gc is None:
        from pyqtgraph.util.garbage_collector import GarbageCollector

        _gui_thread_gc = GarbageCollector(interval=0.5)


def install_exception_hook(window) -> None:
    """Show exceptions that escape slots as messages in ``window`` (and log them)."""
    previous = sys.excepthook

    def hook(exc_type, exc, tb):
        if issubclass(exc_type, KeyboardInterrupt):
            previous(exc_type, exc, tb)
            return
        log.error("unhandled error:\n%s", "".join(traceback.format_exception(exc_type, exc, tb)))
        from studio.workers.base import describe_error

        try:
            window.show_error(*describe_error(exc))
        except Exception:  # noqa: BLE001 - the window itself may be gone
            previous(exc_type, exc, tb)

    sys.excepthook = hook


def run_app(argv: list[str]) -> int:
    """Open the main window (and any audio files named in ``argv[1:]``); returns the exit status."""
    app = create_application(argv)
    from studio.ui.mainwindow import MainWindow

    window = MainWindow()
    install_exception_hook(window)
    window.show()
    from studio.ui.qt_binding import binding_problem

    problem = binding_problem()
    if problem is not None:
        log.error("%s", problem)
        window.show_error("Qt binding", problem)
    for path in argv[1:]:
        if os.path.isfile(path):
            window.open_file(path)
    return int(app.exec())
