"""The connection board's rules (core/platform/connection_board.py): which web process takes the
next connection when every one is busy, and how far above the least loaded one is. Pure rules,
plus one fork to show the counts are shared."""
from __future__ import annotations

import os

import pytest

from core.platform.connection_board import ConnectionBoard


def board_with(*workers: tuple[int, bool]) -> ConnectionBoard:
    """A board whose slots 0..n-1 hold (active connections, every thread busy)."""
    board = ConnectionBoard(slots=8)
    for slot, (connections, busy) in enumerate(workers):
        assert board.claim() == slot
        board.publish(slot, connections, busy)
    return board


def test_a_busy_worker_never_takes_a_connection_while_another_has_a_free_thread():
    board = board_with((1, True), (5, False))
    assert not board.fewest(0)  # fewer connections, but the other can start on it now


def test_when_all_are_busy_the_fewest_active_connections_take_it():
    board = board_with((9, True), (7, True), (8, True))
    assert [board.fewest(slot) for slot in range(3)] == [False, True, False]


def test_a_tie_goes_to_the_lowest_slot_only():
    board = board_with((8, True), (8, True))
    assert [board.fewest(0), board.fewest(1)] == [True, False]


def test_a_released_slot_no_longer_counts_and_is_claimed_again():
    board = board_with((3, True), (1, True))
    assert not board.fewest(0)
    board.release(1)  # that worker was reaped
    assert board.fewest(0) and board.excess(0) == 0
    assert board.claim() == 1  # the replacement, with no connection and a free thread
    assert not board.fewest(0)


def test_excess_is_the_distance_above_the_least_loaded():
    board = board_with((9, True), (7, True), (8, True))
    assert [board.excess(slot) for slot in range(3)] == [2, 0, 1]
    assert board_with((4, True)).excess(0) == 0  # alone: nothing to even out


def test_a_full_board_gives_no_slot():
    board = ConnectionBoard(slots=2)
    assert [board.claim(), board.claim(), board.claim()] == [0, 1, None]
    with pytest.raises(ValueError):
        ConnectionBoard(slots=0)


def test_counts_a_forked_worker_publishes_are_seen_by_the_others():
    board = board_with((2, True), (2, True))
    pid = os.fork()
    if pid == 0:  # the worker at slot 1: it loses two clients
        board.publish(1, 0, True)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert not board.fewest(0) and board.fewest(1) and board.excess(0) == 2
