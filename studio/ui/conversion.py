"""Voice conversion in the window: the Convert panel's actions, its workers and the live session.

``ConversionController`` belongs to the main window (GUI thread). It turns the panel's requests into
workers (``studio.workers.conversion``), makes converted audio a take whose ``source`` is what it was
made from (A/B in the takes list), lists the target voices, builds new ones, and starts/stops live
conversion. The window's 30 Hz poll calls ``poll()``, which refreshes the live readouts from the
converter's ``stats()`` snapshot (a few times a second) — never from an audio or engine thread.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtWidgets import QFileDialog, QInputDialog

from studio.ui.panels.convert import ConvertPanel, ConvertParams
from studio.ui.takes import Take
from studio.ui.views.track import AudioTrack
from studio.workers.conversion import (
    ConversionJob,
    ConversionWorker,
    LiveStartWorker,
    LiveStopWorker,
    VoiceBuildWorker,
)

if TYPE_CHECKING:
    from studio.ui.mainwindow import MainWindow

log = logging.getLogger(__name__)

LIVE_READOUT_HZ = 5
LIVE_KEEP_S = 30.0  # converted audio kept as a take when live mode stops
DEFAULT_DEVICE = "default"


@dataclass(frozen=True)
class VoiceListing:
    """What the window shows of a voice (read in a worker): the Convert panel's target list and the
    Models panel's Voices group."""

    name: str
    summary: str
    description: str
    path: str
    bundled: bool
    median_f0_hz: float
    speech_minutes: float | None


def voice_listings() -> list[VoiceListing]:
    """The user's and the bundled voices (``list_voices``; broken files skipped). Any thread."""
    from studio.engine.convert import list_voices
    from studio.engine.convert.voice import is_bundled

    return [
        VoiceListing(
            name=v.name, summary=v.summary(), description=v.description, path=str(v.path), bundled=is_bundled(v),
            median_f0_hz=v.median_f0_hz, speech_minutes=v.speech_minutes,
        )
        for v in list_voices()
    ]


class ConversionController:
    """Wires ``panel`` to ``window``. State: ``worker`` (an offline conversion), ``live`` (a running
    LiveConverter), ``live_state`` ("stopped", "starting", "running", "stopping"), ``voices`` (name → summary)."""

    def __init__(self, window: MainWindow, panel: ConvertPanel) -> None:
        self.window = window
        self.panel = panel
        self.worker: ConversionWorker | None = None
        self.builder: VoiceBuildWorker | None = None
        self.live: Any = None
        self.live_state = "stopped"
        self.last_live_stats: Any = None
        self.voices: dict[str, str] = {}
        self._tick = 0
        self._count = 0
        panel.convertRequested.connect(self.convert)
        panel.cancelRequested.connect(self.cancel)
        panel.buildVoiceRequested.connect(self.build_voice_dialog)
        panel.refreshVoicesRequested.connect(self.refresh_voices)
        panel.liveToggled.connect(self.toggle_live)
        panel.monitorToggled.connect(self._set_monitor)
        panel.set_live("stopped")

    # -- voices ----------------------------------------------------------------------------------
    def refresh_voices(self) -> None:
        """List the user's and the bundled voices (read in a worker) in this panel and the Models panel."""
        self.window.run_function(voice_listings, on_result=self._on_voices)

    def _on_voices(self, voices: list[VoiceListing]) -> None:
        self.voices = {v.name: v.summary for v in voices}
        self.panel.set_voices([(v.name, v.summary) for v in voices])
        self.window.models_panel.set_voices(voices)

    def build_voice_dialog(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(
            self.window, "Recordings of one speaker (a few minutes in all)", os.path.expanduser("~"),
            "Audio files (*.wav *.flac *.ogg *.mp3 *.g722);;All files (*)",
        )
        if not files:
            return
        stem = re.sub(r"[^A-Za-z0-9_-]+", "-", os.path.basename(os.path.dirname(files[0]))).strip("-") or "voice"
        name, ok = QInputDialog.getText(self.window, "Name the voice", "Voice name:", text=stem)
        if ok and name.strip():
            self.build_voice(name.strip(), files)

    def build_voice(self, name: str, files: list[str]) -> VoiceBuildWorker | None:
        """Build voice ``name`` from ``files`` in a worker; it joins the target list when saved."""
        if self.builder is not None:
            return None
        worker = VoiceBuildWorker(name, files)
        self.builder = worker
        self.panel.set_building(True)
        panel = self.panel
        panel.readout.setText(f"Building voice '{name}' from {len(files)} file(s)…")
        worker.connect_gui(worker.progress, lambda done, total: panel.readout.setText(
            f"Building voice '{name}': analysed {done}/{total} files"))
        worker.connect_gui(worker.built, lambda voice: self._on_voice_built(voice))
        worker.connect_gui(worker.done, self._on_build_done)
        self.window.run_worker(worker)
        return worker

    def _on_voice_built(self, voice: Any) -> None:
        self.panel.readout.setText(f"Built {voice.summary()}")
        self.window.statusBar().showMessage(f"Voice '{voice.name}' saved to {voice.path}", 5000)
        self.voices[voice.name] = voice.summary()
        self.panel.set_voices(sorted(self.voices.items()), current=voice.name)

    def _on_build_done(self) -> None:
        self.builder = None
        self.panel.set_building(False)

    # -- offline conversion --------------------------------------------------------------------------
    def _source(self, key: str) -> tuple[np.ndarray, int, Take, float]:
        """(audio [T], rate, source take, offset of the audio in that take in s); ValueError says what is missing."""
        w = self.window
        take = w.current_take
        if key == "recording":
            if w.last_recording is None:
                raise ValueError("there is no recording yet: record a take (R) first, or pick another source")
            rec = w.last_recording
            return rec.track.samples.copy(), rec.sample_rate, rec, 0.0
        if take is None or take.track.num_samples == 0:
            raise ValueError("no take is shown: open a file (Ctrl+O) or record one (R) first")
        if not take.track.complete:
            raise ValueError(f"take '{take.name}' is still being made: wait until it is finished")
        if key == "selection":
            sel = w.timeline.selection()
            if sel is None:
                raise ValueError("nothing is selected: drag across the waveform to select what to convert")
            a, b = (int(round(t * take.sample_rate)) for t in sel)
            return take.track.samples[a:b].copy(), take.sample_rate, take, a / take.sample_rate
        return take.track.samples.copy(), take.sample_rate, take, 0.0

    def convert(self, params: ConvertParams) -> ConversionWorker | None:
        """Convert the chosen source in a worker; the result becomes a take beside its source."""
        from studio.engine.convert import VoiceTransform

        if self.worker is not None:
            return None
        w = self.window
        try:
            transform = VoiceTransform(params.pitch_semitones, params.formant_ratio, params.whisper)
            audio, rate, source, offset = self._source(params.source)
        except ValueError as exc:
            w.show_error("Cannot convert", str(exc))
            return None
        if audio.shape[0] < rate // 10:
            w.show_error("Cannot convert", "the source is shorter than 0.1 s: select or record more speech")
            return None
        worker = ConversionWorker(ConversionJob(audio, rate, transform, params.voice, params.render, params.speaker))
        self.worker = worker
        self.panel.set_converting(True, f"Converting {audio.shape[0] / rate:.2f} s of '{source.name}'…")
        worker.connect_gui(worker.converted, lambda result: self._on_converted(result, source, offset, params))
        worker.connect_gui(worker.cancelled, lambda: self.panel.readout.setText("Conversion cancelled"))
        worker.connect_gui(worker.failed, lambda *_: self.panel.readout.setText("Conversion failed"))
        worker.connect_gui(worker.done, self._on_done)
        w.run_worker(worker)
        return worker

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            self.window.statusBar().showMessage("Cancelling the conversion…", 2000)

    def _on_done(self) -> None:
        self.worker = None
        self.panel.set_converting(False)

    def _on_converted(self, result: Any, source: Take, offset: float, params: ConvertParams) -> None:
        worker_seconds = self.worker.seconds if self.worker is not None else 0.0
        what = self.worker.target_description if self.worker is not None else ""
        self._count += 1
        stem = os.path.splitext(source.name)[0]
        name = f"{stem} → {params.voice or 'own'} {params.pitch_semitones:+g} st #{self._count}"
        take = Take(name, AudioTrack(result.sample_rate, result.audio, name), "conversion", saved=False,
                    source=source, source_offset_s=offset)
        take.description = what
        self.window.add_take(take)
        f0 = ""
        if np.isfinite(result.source_f0_median_hz) and np.isfinite(result.output_f0_median_hz):
            f0 = f"\nmedian F0 {result.source_f0_median_hz:.0f} → {result.output_f0_median_hz:.0f} Hz"
        notes = "".join(f"\nnote: {note}" for note in result.notes)
        self.panel.readout.setText(f"{what}: {take.track.duration_s:.2f} s in {worker_seconds:.2f} s{f0}{notes}")
        self.window.statusBar().showMessage(f"Converted into take '{name}' (A/B in Takes compares it with its source)", 5000)

    # -- live ------------------------------------------------------------------------------------
    def toggle_live(self) -> None:
        if self.live_state == "stopped":
            self.start_live()
        elif self.live_state == "running":
            self.stop_live()
        else:
            self.panel.set_live(self.live_state)

    def start_live(self) -> LiveStartWorker | None:
        from studio.engine.convert import VoiceTransform
        from studio.engine.convert.live import LiveSettings

        if self.live_state != "stopped":
            return None
        params, live = self.panel.params(), self.panel.live_params()
        try:
            transform = VoiceTransform(params.pitch_semitones, params.formant_ratio, params.whisper)
        except ValueError as exc:
            self.window.show_error("Cannot start live conversion", str(exc))
            self.panel.set_live("stopped")
            return None
        settings = LiveSettings(
            input_device=None if live.input_device == DEFAULT_DEVICE else live.input_device,
            output_device=None if live.output_device == DEFAULT_DEVICE else live.output_device,
            hop_ms=live.hop_ms,
            device_block=live.device_block,
            gate_db=live.gate_db,
            monitor=live.monitor,
        )
        worker = LiveStartWorker(settings, transform, params.voice, params.speaker)
        self._set_live_state("starting")
        worker.connect_gui(worker.started, self._on_live_started)
        worker.connect_gui(worker.failed, lambda *_: self._set_live_state("stopped"))
        self.window.run_worker(worker)
        return worker

    def _on_live_started(self, converter: Any) -> None:
        if self.window._shut_down:  # the window closed while the devices opened
            converter.stop()
            return
        self.live = converter
        self._set_live_state("running")
        self.window.statusBar().showMessage("Live conversion running", 3000)

    def stop_live(self, keep_take: bool = True) -> LiveStopWorker | None:
        converter = self.live
        if converter is None or self.live_state != "running":
            return None
        self.live = None
        self._set_live_state("stopping")
        worker = LiveStopWorker(converter, LIVE_KEEP_S if keep_take else 0.0)
        worker.connect_gui(worker.stopped, self._on_live_stopped)
        worker.connect_gui(worker.done, lambda: self._set_live_state("stopped"))
        self.window.run_worker(worker)
        return worker

    def _on_live_stopped(self, stats: Any, audio: np.ndarray, rate: int) -> None:
        self.last_live_stats = stats
        self.panel.show_live_stats(stats)
        log.info("live conversion stopped: %s", stats)
        heard = audio.size > 0 and stats.hops > stats.gated_hops and float(np.max(np.abs(audio))) > 1e-4
        if heard and not self.window._shut_down:
            self._count += 1
            name = f"live #{self._count}"
            self.window.add_take(Take(name, AudioTrack(rate, audio, name), "conversion", saved=False))
        self.window.statusBar().showMessage(
            f"Live conversion stopped after {stats.seconds:.1f} s: {stats.underruns} underrun(s)", 5000
        )

    def _set_live_state(self, state: str) -> None:
        self.live_state = state
        self.panel.set_live(state)

    def _set_monitor(self, on: bool) -> None:
        if self.live is not None:
            self.live.set_monitor(on)

    def poll(self) -> None:
        """Called by the window's 30 Hz timer: refresh the live readouts a few times a second."""
        converter = self.live
        if converter is None:
            return
        self._tick += 1
        if self._tick % max(1, 30 // LIVE_READOUT_HZ):
            return
        stats = converter.stats()
        self.last_live_stats = stats
        self.panel.show_live_stats(stats)
        if stats.error is not None:
            self.window.show_error("Live conversion stopped", f"{stats.error}\n\nCheck the devices and start again.")
            self.stop_live(keep_take=False)

    def shutdown(self) -> None:
        """Stop live conversion and cancel work (window closing; blocks briefly)."""
        if self.worker is not None:
            self.worker.cancel()
        if self.builder is not None:
            self.builder.cancel()
        converter, self.live = self.live, None
        if converter is not None:
            try:
                converter.stop()
            except Exception:  # noqa: BLE001 - closing must go on
                log.debug("stopping live conversion failed", exc_info=True)
