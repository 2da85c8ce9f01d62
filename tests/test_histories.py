import numpy as np

from seqbench.data.histories import Histories


def _hist():
    items = np.array([1, 2, 3, 4, 5, 6, 7], dtype=np.int64)
    return Histories(np.array([1, 2, 3]), items, items * 10, np.array([0, 3, 4, 7]))


def test_padded_left_and_right():
    h = _hist()
    assert h.padded(2).tolist() == [[2, 3], [0, 4], [6, 7]]
    assert h.padded(4).tolist() == [[0, 1, 2, 3], [0, 0, 0, 4], [0, 5, 6, 7]]
    assert h.padded(4, left=False).tolist() == [[1, 2, 3, 0], [4, 0, 0, 0], [5, 6, 7, 0]]


def test_tail_and_take_keep_times_aligned():
    h = _hist()
    t = h.tail(2)
    assert t.items.tolist() == [2, 3, 4, 6, 7]
    assert (t.times == t.items * 10).all()
    s = h.take(np.array([2, 0]))
    assert s.users.tolist() == [3, 1]
    assert s.row(0).tolist() == [5, 6, 7] and s.row(1).tolist() == [1, 2, 3]
    assert (s.times == s.items * 10).all()
