"""A private PulseAudio server: real audio through null sinks, without touching the user's sound setup.

Used by the test session (tests/support/pulse.py) and by ``studio eval-convert --live``
(:mod:`studio.engine.convert.live_eval`). Linux only; needs ``pulseaudio``, ``pactl`` and ``parec``
(``pacat`` too for the warm-up, see below).

Layout: two null sinks at 48 kHz stereo. ``test_sink`` is the default output; by default its monitor is
the default input, so what is played comes back when recording (a loopback). ``mic_sink`` stands in for
a microphone in live input→output runs: play a signal into it (``paplay -d mic_sink``) and make
``mic_sink.monitor`` the default input (``default_source=MIC_SOURCE`` or :meth:`PrivatePulse.use_sources`)
so that what a converter plays into ``test_sink`` does not feed back into its input.

The server runs in a fresh temporary runtime directory (socket, pid file, state, config and
``pulse.log``). :meth:`PrivatePulse.start` points this process's environment at it
(``XDG_RUNTIME_DIR`` and ``PULSE_SERVER``; ``PULSE_RUNTIME_PATH``, ``PULSE_SINK`` and ``PULSE_SOURCE``
are removed) so that children and PortAudio reach it; :meth:`PrivatePulse.stop` puts those variables
back. It must be started before ``sounddevice`` is imported: PortAudio lists devices once.

Facts measured here that shape the start-up:

- Warm-up: for its first ~2 s a fresh server holds back any stream, playback or capture, from any
  client (a stream opened at once first called back after 1.5–2 s; one opened 3 s after the start ran
  at once, with or without an earlier stream). ``start`` therefore plays ``WARM_UP_S`` of silence into
  each sink through ``pacat`` in the background: it drains when that stall is over, so
  :meth:`PrivatePulse.wait_warm` knows when streams start at once (without ``pacat`` it waits until
  ``STALL_S`` after the start).
- Monitor readers: a null sink that no low-latency stream listens to renders in 2-second blocks (the
  null sink's default); streams on it then start ~1.4 s late, stall ~2 s at random, and the first capture
  read from its monitor stalls for up to 2 s. ``start`` keeps a ``parec`` reader at 20 ms latency on
  each monitor named in ``readers``.

Cleanup: ``stop`` ends the helpers (readers, warm-up players) and the server, then removes the runtime
directory. Started from the main thread, every process also gets ``PR_SET_PDEATHSIG`` = SIGKILL, so
it dies with this process even when this process is SIGKILLed (then only the runtime directory, a few
kB in the temporary folder, is left). The kernel sends that signal when the *thread* that started the
child ends, so it is not set from other threads.

Threads: a ``PrivatePulse`` is not thread-safe; use it from one thread (normally the main thread).
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

SINK_RATE = 48000  # Hz, both sinks, stereo
OUTPUT_SINK = "test_sink"
MIC_SINK = "mic_sink"
LOOPBACK_SOURCE = f"{OUTPUT_SINK}.monitor"
MIC_SOURCE = f"{MIC_SINK}.monitor"
WARM_UP_S = 0.2  # seconds of silence played into each sink at start
STALL_S = 3.0  # without pacat: wait this long after the start (the stall lasted up to ~2 s)
START_TIMEOUT_S = 15.0  # until the server answers ``pactl info``
STOP_TIMEOUT_S = 5.0  # per process, after SIGTERM, before SIGKILL

CONFIG_NAME = "server.pa"
LOG_NAME = "pulse.log"
CONFIG = """\
load-module module-native-protocol-unix auth-anonymous=1
load-module module-null-sink sink_name={output} rate={rate} channels=2
load-module module-null-sink sink_name={mic} rate={rate} channels=2
set-default-sink {output}
set-default-source {source}
"""
REQUIRED_TOOLS = ("pulseaudio", "pactl", "parec")
# Variables that steer libpulse clients elsewhere: replaced or removed while the server runs.
CLIENT_VARIABLES = ("XDG_RUNTIME_DIR", "PULSE_SERVER", "PULSE_RUNTIME_PATH", "PULSE_SINK", "PULSE_SOURCE")
PR_SET_PDEATHSIG = 1


class PrivatePulseError(RuntimeError):
    """The private sound server cannot run."""


class PulseMissingError(PrivatePulseError):
    """PulseAudio's programs are not installed."""


class PulseStartError(PrivatePulseError):
    """The server was started but did not come up."""


def missing_tools() -> list[str]:
    """The required programs (``REQUIRED_TOOLS``) not found on PATH; empty when the server can run."""
    return [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]


@dataclass
class PrivatePulse:
    """A running private server and its helper processes (see the module doc). Make one with :meth:`start`.

    ``runtime_dir`` holds the socket (``pulse/native``), the config and ``pulse.log``. ``server`` is the
    ``pulseaudio`` process, ``readers`` the ``parec`` monitor readers, ``warm_up`` the ``pacat``
    start-up silences (they exit on their own once drained).
    """

    runtime_dir: str
    reader_sources: tuple[str, ...]
    die_with_parent: bool
    server: subprocess.Popen | None = None
    readers: list[subprocess.Popen] = field(default_factory=list)
    warm_up: list[subprocess.Popen] = field(default_factory=list)
    started_at: float = 0.0  # time.monotonic() when the server answered
    _saved_environ: dict[str, str | None] | None = None

    @classmethod
    def start(
        cls,
        *,
        default_source: str = LOOPBACK_SOURCE,
        readers: tuple[str, ...] = (LOOPBACK_SOURCE,),
        point_environ: bool = True,
        die_with_parent: bool = True,
        prefix: str = "studio-pulse-",
    ) -> PrivatePulse:
        """Start the server, its monitor readers and the warm-up silences; returns without waiting
        for the warm-up (call :meth:`wait_warm`).

        ``default_source``: the default input (``LOOPBACK_SOURCE`` or ``MIC_SOURCE``); the default
        output is always ``OUTPUT_SINK``. ``readers``: monitors that get a low-latency reader.
        ``point_environ``: point this process's environment at the server (see the module doc).
        ``die_with_parent``: PR_SET_PDEATHSIG on every process (main thread on Linux only).
        Raises PulseMissingError or PulseStartError; whatever was started is stopped again when any
        exception (KeyboardInterrupt included) leaves this method.
        """
        missing = missing_tools()
        if missing:
            raise PulseMissingError(
                f"{', '.join(missing)} not found: install PulseAudio (`apt-get install pulseaudio pulseaudio-utils`)"
            )
        pulse = cls(tempfile.mkdtemp(prefix=prefix), tuple(readers), die_with_parent)
        try:
            os.chmod(pulse.runtime_dir, 0o700)
            with open(os.path.join(pulse.runtime_dir, CONFIG_NAME), "w") as fh:
                fh.write(CONFIG.format(output=OUTPUT_SINK, mic=MIC_SINK, rate=SINK_RATE, source=default_source))
            pulse._launch()
            if point_environ:
                pulse._point_environ()
        except BaseException:
            pulse.stop()
            raise
        log.info("private PulseAudio server up in %s (pid %d)", pulse.runtime_dir, pulse.server.pid)
        return pulse

    # -- addressing -------------------------------------------------------------------------------

    @property
    def socket_path(self) -> str:
        return os.path.join(self.runtime_dir, "pulse", "native")

    @property
    def server_address(self) -> str:
        """The address for ``PULSE_SERVER`` / ``pactl --server``."""
        return f"unix:{self.socket_path}"

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """An environment (``base`` or this process's) whose libpulse clients reach this server."""
        env = {k: v for k, v in (os.environ if base is None else base).items() if k not in CLIENT_VARIABLES}
        env["XDG_RUNTIME_DIR"] = self.runtime_dir
        env["PULSE_SERVER"] = self.server_address
        return env

    def pactl(self, *args: str) -> str:
        """Run ``pactl ARGS`` against this server; its standard output (CalledProcessError on failure)."""
        return subprocess.run(
            ["pactl", *args], check=True, capture_output=True, text=True, timeout=10, env=self.env()
        ).stdout

    def use_sources(self, sink: str = OUTPUT_SINK, source: str = LOOPBACK_SOURCE) -> None:
        """Set the default output sink and input source (takes effect for streams opened after)."""
        self.pactl("set-default-sink", sink)
        self.pactl("set-default-source", source)

    # -- state ------------------------------------------------------------------------------------

    def processes(self) -> list[subprocess.Popen]:
        """Every process this object started that has not been reaped yet (server last)."""
        procs = [*self.warm_up, *self.readers, *([self.server] if self.server is not None else [])]
        return [p for p in procs if p.poll() is None]

    def wait_warm(self, timeout: float = 15.0) -> bool:
        """Wait until the start-up silences have played (the first-stream stall is over); True if so."""
        deadline = time.monotonic() + timeout
        if not self.warm_up:  # no pacat: wait out the measured stall
            time.sleep(max(0.0, min(self.started_at + STALL_S, deadline) - time.monotonic()))
            return time.monotonic() >= self.started_at + STALL_S
        for proc in self.warm_up:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("the sound server's warm-up did not finish in %.0f s", timeout)
                return False
        return True

    # -- lifecycle --------------------------------------------------------------------------------

    def kill(self) -> None:
        """SIGKILL the server and its helpers (as a crash would): every stream on it dies at once.
        The runtime directory stays, so :meth:`restart` can bring the server back."""
        for proc in self.processes():
            proc.kill()
        for proc in [*self.warm_up, *self.readers, *([self.server] if self.server else [])]:
            proc.wait(timeout=STOP_TIMEOUT_S)

    def restart(self) -> None:
        """Start the server again in the same runtime directory (same socket, same sinks), after
        :meth:`kill`. Clients that reconnect (new PortAudio streams) reach the new server."""
        self.kill()
        self._launch()

    def stop(self) -> None:
        """End the helpers and the server (SIGTERM, SIGKILL after ``STOP_TIMEOUT_S``), remove the
        runtime directory and restore the environment. Safe to call more than once."""
        for proc in self.processes():
            proc.terminate()
        for proc in [*self.warm_up, *self.readers, *([self.server] if self.server else [])]:
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                log.warning("%s (pid %d) ignored SIGTERM; killing it", proc.args[0], proc.pid)
                proc.kill()
                proc.wait()
        self.warm_up, self.readers, self.server = [], [], None
        shutil.rmtree(self.runtime_dir, ignore_errors=True)
        self._restore_environ()

    def __enter__(self) -> PrivatePulse:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- internals --------------------------------------------------------------------------------

    def _launch(self) -> None:
        """Run the server on the runtime directory's config, wait until it answers, then start the
        monitor readers and the warm-up silences (see the module doc)."""
        preexec = _die_with_this_thread() if self.die_with_parent else None
        server_env = self.env()
        server_env.pop("PULSE_SERVER")  # the server makes the socket; it must not look for one
        server_env["PULSE_STATE_PATH"] = os.path.join(self.runtime_dir, "state")  # not ~/.config/pulse
        with open(os.path.join(self.runtime_dir, LOG_NAME), "a") as log_file:
            self.server = subprocess.Popen(
                ["pulseaudio", "-n", "-F", os.path.join(self.runtime_dir, CONFIG_NAME), "--daemonize=no",
                 "--exit-idle-time=-1", "--log-target=stderr"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log_file, env=server_env,
                preexec_fn=preexec,
            )
        client_env = self.env()
        deadline = time.monotonic() + START_TIMEOUT_S
        while subprocess.run(["pactl", "info"], capture_output=True, env=client_env).returncode != 0:
            if self.server.poll() is not None or time.monotonic() > deadline:
                raise PulseStartError(
                    f"PulseAudio did not start within {START_TIMEOUT_S:.0f} s (exit status {self.server.poll()}); "
                    f"the end of its log: {self._log_tail()!r}"
                )
            time.sleep(0.1)
        self.started_at = time.monotonic()
        self.readers = []
        for source in self.reader_sources:
            self.readers.append(subprocess.Popen(
                ["parec", "-d", source, "--latency-msec=20", "--raw"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=client_env,
                preexec_fn=preexec,
            ))
        self.warm_up = []
        if shutil.which("pacat") is None:
            return
        silence = bytes(int(WARM_UP_S * SINK_RATE) * 2 * 2)  # s16le stereo; fits a pipe: no block
        for sink in (OUTPUT_SINK, MIC_SINK):
            player = subprocess.Popen(
                ["pacat", "--playback", "-d", sink, "--raw", "--format=s16le", f"--rate={SINK_RATE}",
                 "--channels=2", "--latency-msec=20"],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=client_env,
                preexec_fn=preexec,
            )
            self.warm_up.append(player)
            player.stdin.write(silence)
            player.stdin.close()

    def _log_tail(self, chars: int = 600) -> str:
        try:
            with open(os.path.join(self.runtime_dir, LOG_NAME), errors="replace") as fh:
                return fh.read()[-chars:].strip()
        except OSError:
            return ""

    def _point_environ(self) -> None:
        if self._saved_environ is None:
            self._saved_environ = {name: os.environ.get(name) for name in CLIENT_VARIABLES}
        for name in CLIENT_VARIABLES:
            os.environ.pop(name, None)
        os.environ.update(XDG_RUNTIME_DIR=self.runtime_dir, PULSE_SERVER=self.server_address)

    def _restore_environ(self) -> None:
        saved, self._saved_environ = self._saved_environ, None
        if saved is None or os.environ.get("PULSE_SERVER") != self.server_address:
            return  # never pointed, or someone has pointed it elsewhere since
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _die_with_this_thread() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGKILL when this (main) thread ends, or None where
    that is not possible or not wanted (not Linux, not the main thread, no ``prctl``)."""
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent = os.getpid()
    kill = int(signal.SIGKILL)

    def preexec() -> None:  # runs in the child between fork and exec: nothing that can block
        prctl(PR_SET_PDEATHSIG, kill, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the prctl: no signal will come
            os._exit(1)

    return preexec
