"""Look of the studio: a dark Fusion palette, one accent colour, monospace readouts.

Call ``apply_theme(app)`` once, before creating windows (it also sets pyqtgraph's global options:
OpenGL off, row-major images, antialiasing off for speed).
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtGui import QColor, QFont, QFontDatabase, QPalette
from PySide6.QtWidgets import QApplication

ACCENT = "#3fb4ff"  # the one accent colour: waveform, playhead, progress, focus
ACCENT_DIM = "#1f6d9c"
BACKGROUND = "#17191c"
PANEL = "#202327"
BASE = "#121416"
TEXT = "#d8dde3"
TEXT_DIM = "#8a939c"
WARNING = "#ffb74a"
CLIP = "#ff4d4d"
SELECTION_BRUSH = (63, 180, 255, 45)

STYLE_SHEET = f"""
QMainWindow::separator {{ background: {BASE}; width: 4px; height: 4px; }}
QDockWidget {{ color: {TEXT}; }}
QDockWidget::title {{ background: {PANEL}; padding: 4px 8px; border-bottom: 1px solid {BASE}; }}
QGroupBox {{ border: 1px solid #2d3136; border-radius: 4px; margin-top: 14px; padding: 8px 6px 6px 6px; }}
QGroupBox::title {{ subcontrol-origin: margin; left: 8px; padding: 0 4px; color: {TEXT_DIM}; }}
QPushButton {{ background: #2a2e33; border: 1px solid #363b41; border-radius: 4px; padding: 4px 12px; }}
QPushButton:hover {{ border-color: {ACCENT_DIM}; }}
QPushButton:pressed, QPushButton:checked {{ background: {ACCENT_DIM}; border-color: {ACCENT}; }}
QPushButton:disabled {{ color: #5b6168; }}
QPushButton#primary {{ background: {ACCENT_DIM}; border-color: {ACCENT}; color: white; font-weight: bold; }}
QPushButton#primary:disabled {{ background: #2a2e33; border-color: #363b41; color: #5b6168; }}
QToolBar {{ background: {PANEL}; border: none; spacing: 6px; padding: 3px; }}
QToolButton {{ border: 1px solid transparent; border-radius: 4px; padding: 3px 6px; }}
QToolButton:hover {{ border-color: {ACCENT_DIM}; }}
QToolButton:checked {{ background: {ACCENT_DIM}; border-color: {ACCENT}; }}
QProgressBar {{ border: 1px solid #363b41; border-radius: 3px; background: {BASE}; text-align: center; height: 14px; }}
QProgressBar::chunk {{ background: {ACCENT_DIM}; }}
QStatusBar {{ background: {PANEL}; color: {TEXT_DIM}; }}
QStatusBar QLabel {{ color: {TEXT_DIM}; padding: 0 6px; }}
QLabel#readout {{ color: {TEXT}; }}
QLabel#dim {{ color: {TEXT_DIM}; }}
QListWidget, QTreeWidget, QPlainTextEdit, QTextEdit {{ background: {BASE}; border: 1px solid #2d3136; }}
QListWidget::item:selected, QTreeWidget::item:selected {{ background: {ACCENT_DIM}; }}
QTabBar::tab {{ background: {PANEL}; padding: 5px 12px; border: 1px solid #2d3136; border-bottom: none; }}
QTabBar::tab:selected {{ background: #2a2e33; border-top: 2px solid {ACCENT}; }}
"""


def monospace_font(point_size: int | None = None) -> QFont:
    """The system fixed-width font, for time and level readouts."""
    font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
    if point_size:
        font.setPointSize(point_size)
    return font


def configure_pyqtgraph() -> None:
    pg.setConfigOptions(
        useOpenGL=False,  # grab() of GL plots is empty offscreen, and raster is fast enough here
        imageAxisOrder="row-major",
        antialias=False,
        background=BASE,
        foreground=TEXT_DIM,
        exitCleanup=False,
    )


def apply_theme(app: QApplication) -> None:
    configure_pyqtgraph()
    app.setStyle("Fusion")
    palette = QPalette()
    roles = {
        QPalette.ColorRole.Window: BACKGROUND,
        QPalette.ColorRole.WindowText: TEXT,
        QPalette.ColorRole.Base: BASE,
        QPalette.ColorRole.AlternateBase: PANEL,
        QPalette.ColorRole.ToolTipBase: PANEL,
        QPalette.ColorRole.ToolTipText: TEXT,
        QPalette.ColorRole.Text: TEXT,
        QPalette.ColorRole.Button: "#2a2e33",
        QPalette.ColorRole.ButtonText: TEXT,
        QPalette.ColorRole.BrightText: "#ffffff",
        QPalette.ColorRole.Highlight: ACCENT_DIM,
        QPalette.ColorRole.HighlightedText: "#ffffff",
        QPalette.ColorRole.Link: ACCENT,
        QPalette.ColorRole.PlaceholderText: TEXT_DIM,
    }
    for role, colour in roles.items():
        palette.setColor(role, QColor(colour))
    for role in (QPalette.ColorRole.WindowText, QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText):
        palette.setColor(QPalette.ColorGroup.Disabled, role, QColor("#5b6168"))
    app.setPalette(palette)
    app.setStyleSheet(STYLE_SHEET)
