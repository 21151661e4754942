"""The models panel: bundled and user checkpoints with their cards, opening one from disk, loading;
and the voices (conversion targets, saved like models), which "Load" makes the Convert panel's target."""

from __future__ import annotations

import logging
from html import escape
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTextBrowser,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from studio.ui.widgets.common import quiet_progress, set_combo_items

log = logging.getLogger(__name__)

PATH_ROLE = Qt.ItemDataRole.UserRole
VOICE_ROLE = Qt.ItemDataRole.UserRole + 1


def card_html(card: Any, path: str = "") -> str:
    """A model card as short HTML for the details box."""
    p = card.profile
    rows = [
        ("family", card.family),
        ("sample rate", f"{card.sample_rate} Hz"),
        ("conditioning", card.conditioning),
        ("parameters", f"{card.parameters:,}"),
        ("receptive field", f"{card.receptive_field:,} samples ({1000 * card.receptive_field / card.sample_rate:.1f} ms)"),
        ("features", f"{p.name}: {p.n_mels} mels, n_fft {p.n_fft}, hop {p.hop_length}, {p.fmin:g}–{p.fmax:g} Hz"),
    ]
    steps = card.training.get("steps") if isinstance(card.training, dict) else None
    if steps is not None:
        rows.append(("trained", f"{steps} steps"))
    if path:
        rows.append(("file", path))
    body = "".join(f"<tr><td style='color:#8a939c;padding-right:8px'>{k}</td><td>{v}</td></tr>" for k, v in rows)
    desc = f"<p>{card.description}</p>" if card.description else ""
    return f"<b>{card.name}</b>{desc}<table>{body}</table>"


def voice_html(voice: Any) -> str:
    """A voice listing (``ui.conversion.VoiceListing``) as short HTML for the details box."""
    rows = [("kind", "voice: a conversion target (Convert panel, `studio convert --to NAME`)"),
            ("median F0", f"{voice.median_f0_hz:.0f} Hz")]
    if voice.speech_minutes is not None:
        rows.append(("built from", f"{voice.speech_minutes:.1f} min of speech"))
    rows.append(("file", voice.path))
    body = "".join(f"<tr><td style='color:#8a939c;padding-right:8px'>{k}</td><td>{escape(v)}</td></tr>" for k, v in rows)
    desc = f"<p>{escape(voice.description)}</p>" if voice.description else ""
    return f"<b>{escape(voice.name)}</b>{desc}<table>{body}</table><p>Load makes it the Convert panel's target voice.</p>"


class ModelsPanel(QWidget):
    """Lists models and voices; emits ``loadRequested(path, device)``, ``openRequested()`` (pick a
    file) and ``voiceRequested(name)`` (a voice loaded: make it the conversion target)."""

    loadRequested = Signal(str, str)
    openRequested = Signal()
    voiceRequested = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.tree = QTreeWidget()
        self.tree.setHeaderHidden(True)
        self.tree.setRootIsDecorated(True)
        self.mine = QTreeWidgetItem(["Mine"])
        self.bundled = QTreeWidgetItem(["Bundled"])
        self.voices = QTreeWidgetItem(["Voices"])
        self.voices.setToolTip(0, "Target voices for conversion (yours and the bundled ones)")
        for group in (self.mine, self.bundled, self.voices):
            group.setFlags(Qt.ItemFlag.ItemIsEnabled)
            self.tree.addTopLevelItem(group)
        self.details = QTextBrowser()
        self.details.setOpenLinks(False)
        self.details.setMinimumHeight(60)
        self.device = QComboBox()
        self.device.setToolTip("Where the model runs")
        self.load_button = QPushButton("Load")
        self.load_button.setObjectName("primary")
        self.load_button.setEnabled(False)
        self.open_button = QPushButton("Open…")
        self.open_button.setToolTip("Load a checkpoint from disk (NAME.safetensors + NAME.json)")
        self.refresh_button = QPushButton("Refresh")
        self.progress = quiet_progress(100)
        self.state = QLabel("No model loaded")
        self.state.setObjectName("dim")
        self.state.setWordWrap(True)

        buttons = QHBoxLayout()
        buttons.addWidget(self.load_button)
        buttons.addWidget(self.open_button)
        buttons.addWidget(self.refresh_button)
        device_row = QHBoxLayout()
        caption = QLabel("device")
        caption.setObjectName("dim")
        device_row.addWidget(caption)
        device_row.addWidget(self.device, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.tree, 2)
        layout.addWidget(self.details, 1)
        layout.addLayout(device_row)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.state)

        self.tree.currentItemChanged.connect(self._on_current)
        self.tree.itemDoubleClicked.connect(lambda item, _col: self._load(item))
        self.load_button.clicked.connect(lambda: self._load(self.tree.currentItem()))
        self.open_button.clicked.connect(self.openRequested)
        self._cards: dict[str, Any] = {}
        self._voices: dict[str, Any] = {}

    def set_devices(self, devices: list[str], current: str = "cpu") -> None:
        set_combo_items(self.device, devices, current)

    def set_entries(self, entries: list[Any]) -> None:
        """Fill the tree from catalogue entries (``name``, ``path``, ``card``, ``bundled``)."""
        for group in (self.mine, self.bundled):
            group.takeChildren()
        self._cards.clear()
        for entry in entries:
            item = QTreeWidgetItem([f"{entry.name}  ·  {entry.card.family}"])
            item.setData(0, PATH_ROLE, str(entry.path))
            item.setToolTip(0, str(entry.path))
            self._cards[str(entry.path)] = entry.card
            (self.bundled if entry.bundled else self.mine).addChild(item)
        self.mine.setText(0, f"Mine ({self.mine.childCount()})")
        self.bundled.setText(0, f"Bundled ({self.bundled.childCount()})")
        self.tree.expandAll()

    def set_voices(self, voices: list[Any]) -> None:
        """Fill the Voices group from voice listings (``name``, ``summary``, ``path``, ``bundled``, …)."""
        self.voices.takeChildren()
        self._voices = {v.name: v for v in voices}
        for v in voices:
            item = QTreeWidgetItem([f"{v.name}  ·  voice{'' if v.bundled else ' (mine)'}"])
            item.setData(0, VOICE_ROLE, v.name)
            item.setToolTip(0, v.summary)
            self.voices.addChild(item)
        self.voices.setText(0, f"Voices ({self.voices.childCount()})")
        self.voices.setExpanded(True)

    def select_path(self, path: str) -> bool:
        for group in (self.mine, self.bundled):
            for i in range(group.childCount()):
                if group.child(i).data(0, PATH_ROLE) == path:
                    self.tree.setCurrentItem(group.child(i))
                    return True
        return False

    def select_voice(self, name: str) -> bool:
        for i in range(self.voices.childCount()):
            if self.voices.child(i).data(0, VOICE_ROLE) == name:
                self.tree.setCurrentItem(self.voices.child(i))
                return True
        return False

    def _on_current(self, item: QTreeWidgetItem | None, _prev=None) -> None:
        path = item.data(0, PATH_ROLE) if item is not None else None
        voice = item.data(0, VOICE_ROLE) if item is not None else None
        self.load_button.setEnabled(bool(path or voice))
        if path and path in self._cards:
            self.details.setHtml(card_html(self._cards[path], path))
        elif voice and voice in self._voices:
            self.details.setHtml(voice_html(self._voices[voice]))

    def _load(self, item: QTreeWidgetItem | None) -> None:
        path = item.data(0, PATH_ROLE) if item is not None else None
        voice = item.data(0, VOICE_ROLE) if item is not None else None
        if path:
            self.loadRequested.emit(str(path), self.device.currentText() or "cpu")
        elif voice:
            self.voiceRequested.emit(str(voice))

    def set_busy(self, busy: bool) -> None:
        item = self.tree.currentItem()
        loadable = item is not None and bool(item.data(0, PATH_ROLE) or item.data(0, VOICE_ROLE))
        self.load_button.setEnabled(not busy and loadable)
        self.open_button.setEnabled(not busy)
