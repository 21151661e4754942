"""The lock-free frame rings: FIFO order across the wrap, contiguous views, counters, flush, threads."""

import threading
import time

import numpy as np
import pytest

from studio.engine.audio.ring import FrameRing, HistoryRing


def ramp(start: int, n: int, channels: int = 2) -> np.ndarray:
    """Frames whose every channel holds the frame's absolute index (channel c adds c * 0.25)."""
    idx = np.arange(start, start + n, dtype=np.float32)[:, None]
    return idx + 0.25 * np.arange(channels, dtype=np.float32)[None, :]


def test_fifo_order_across_many_wraps_with_odd_block_sizes():
    ring = FrameRing(capacity=37, channels=2)
    written = read = 0
    rng = np.random.default_rng(1)
    for _ in range(500):
        n = int(rng.integers(0, 30))
        written += ring.write(ramp(written, n))
        out = np.full((int(rng.integers(1, 30)), 2), -1.0, np.float32)
        got = ring.read_into(out)
        np.testing.assert_array_equal(out[:got], ramp(read, got))
        assert np.all(out[got:] == -1.0), "frames past the count must be left untouched"
        read += got
    assert ring.write_pos == written and ring.read_pos == read
    assert written > 10 * ring.capacity  # really wrapped many times


def test_write_stops_when_full_and_counts_are_absolute():
    ring = FrameRing(8, 1)
    assert ring.write(np.arange(5, dtype=np.float32)) == 5
    assert ring.write(np.arange(5, 10, dtype=np.float32)) == 3  # only 3 frames of room
    assert ring.readable() == 8 and ring.writable() == 0
    assert ring.write(np.ones(4, np.float32)) == 0
    out = np.zeros((6, 1), np.float32)
    assert ring.read_into(out) == 6
    np.testing.assert_array_equal(out[:, 0], np.arange(6))
    assert (ring.write_pos, ring.read_pos, ring.writable()) == (8, 6, 6)


def test_peek_gives_one_contiguous_view_even_across_the_wrap():
    ring = FrameRing(10, 2)
    ring.write(ramp(0, 7))
    ring.advance(7)
    ring.write(ramp(7, 9))  # storage indices 7, 8, 9, 0, … 5: wraps
    view = ring.peek(9)
    assert view.shape == (9, 2)
    assert view.base is not None  # a view into the ring, not a copy
    assert not view.flags.writeable
    np.testing.assert_array_equal(view, ramp(7, 9))
    ring.advance(9)
    assert ring.readable() == 0
    with pytest.raises(ValueError):
        ring.advance(1)


def test_flush_request_is_applied_by_the_consumer():
    ring = FrameRing(16, 1)
    ring.write(np.arange(10, dtype=np.float32))
    out = np.zeros((3, 1), np.float32)
    ring.read_into(out)
    target = ring.request_flush()
    assert target == 10 and ring.readable() == 0  # what the producer must now refill
    assert ring.writable() == 16 - 7  # still conservative until the consumer skips
    ring.write(np.array([42, 43], np.float32))
    got = ring.read_into(out)
    assert got == 2 and list(out[:2, 0]) == [42, 43]
    assert ring.read_pos == 12


def test_shape_checks():
    ring = FrameRing(8, 2)
    with pytest.raises(ValueError, match=r"\(frames, 2\)"):
        ring.write(np.zeros(4, np.float32))
    with pytest.raises(ValueError):
        FrameRing(0, 1)


def test_spsc_threads_keep_every_frame_in_order():
    """A producer and a consumer thread hammer the ring; the consumer must see 0, 1, 2, … exactly."""
    ring = FrameRing(300, 1)
    total = 50_000
    received = np.zeros(total, np.float32)
    errors = []

    def produce():
        pos = 0
        rng = np.random.default_rng(2)
        while pos < total:
            n = min(int(rng.integers(1, 200)), total - pos)
            block = np.arange(pos, pos + n, dtype=np.float32)
            done = 0
            while done < n:
                wrote = ring.write(block[done:])
                done += wrote
                if not wrote:
                    time.sleep(0)  # let the consumer run
            pos += n

    def consume():
        pos = 0
        out = np.zeros((128, 1), np.float32)
        try:
            while pos < total:
                got = ring.read_into(out)
                received[pos : pos + got] = out[:got, 0]
                pos += got
                if not got:
                    time.sleep(0)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=produce), threading.Thread(target=consume)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    np.testing.assert_array_equal(received, np.arange(total, dtype=np.float32))


def test_history_keeps_the_latest_frames():
    hist = HistoryRing(10, 2)
    assert hist.latest(5).shape == (0, 2)
    hist.append(ramp(0, 4))
    np.testing.assert_array_equal(hist.latest(10), ramp(0, 4))
    hist.append(ramp(4, 9))  # 13 frames so far: only the last 10 are kept
    np.testing.assert_array_equal(hist.latest(100), ramp(3, 10))
    np.testing.assert_array_equal(hist.latest(3), ramp(10, 3))
    np.testing.assert_array_equal(hist.since(8, 11), ramp(8, 3))
    hist.append(ramp(13, 25))  # a block larger than the capacity
    np.testing.assert_array_equal(hist.latest(10), ramp(28, 10))
    assert hist.write_pos == 38
