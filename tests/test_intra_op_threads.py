"""``fast_linear.intra_op_threads``: the one place that changes torch's intra-op thread count."""

from __future__ import annotations

import threading

import pytest
import torch

from studio.engine.models.fast_linear import intra_op_threads


def test_a_workers_setting_is_its_own_and_is_restored():
    with intra_op_threads(2):  # earlier tests may have left this thread at 1: then nothing would show
        _worker_sets_one_thread_while_main_keeps_two()


def _worker_sets_one_thread_while_main_keeps_two() -> None:
    main_before = torch.get_num_threads()
    assert main_before == 2
    entered, checked = threading.Event(), threading.Event()
    seen: dict[str, int] = {}

    def worker() -> None:
        seen["own"] = torch.get_num_threads()
        with intra_op_threads(1):
            seen["inside"] = torch.get_num_threads()
            entered.set()
            checked.wait(10)
        seen["after"] = torch.get_num_threads()

    thread = threading.Thread(target=worker)
    thread.start()
    assert entered.wait(10)
    main_meanwhile = torch.get_num_threads()  # the worker holds 1 thread right now
    checked.set()
    thread.join(10)
    assert seen["inside"] == 1
    assert main_meanwhile == main_before
    assert seen["after"] == seen["own"]
    assert torch.get_num_threads() == main_before


def test_none_leaves_the_count_and_nonsense_is_refused():
    before = torch.get_num_threads()
    with intra_op_threads(None):
        assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads"), intra_op_threads(0):
        pass
    assert torch.get_num_threads() == before
