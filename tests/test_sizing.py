import numpy as np

from leanml._sizing import deep_sizeof


def test_counts_array_bytes_once_and_follows_attributes():
    array = np.zeros(10_000, dtype=np.float64)

    class Holder:
        def __init__(self):
            self.a = array
            self.b = array  # same array: counted once
            self.c = {"x": np.ones(1000, dtype=np.int32)}

    size = deep_sizeof(Holder())
    assert 80_000 + 4_000 <= size < 80_000 + 4_000 + 5_000


def test_views_count_their_base_once():
    base = np.zeros(50_000, dtype=np.float64)  # 400 kB
    views = [base[:10], base[10:20]]
    size = deep_sizeof(views)
    assert 400_000 <= size < 401_000
    from_bytes = np.frombuffer(bytes(80_000), dtype=np.float64)  # not owning, base is bytes
    assert deep_sizeof(from_bytes) >= 80_000


def test_atomic_values_are_counted_once_however_they_are_reached():
    import sys

    word = "".join(["vocab", "ulary"])  # not interned: one object, referenced three times
    vocabulary = {word: 123_456, "other": 654_321}
    size = deep_sizeof({"v": vocabulary, "again": [word, (word,)]})
    own = sum(map(sys.getsizeof, ({}, {}, [], ())))  # the containers, at least empty
    leaves = sys.getsizeof(word) + sys.getsizeof("other") + 2 * sys.getsizeof(123_456)
    assert size >= own + leaves + sys.getsizeof("v") + sys.getsizeof("again")
    # the word counted once: adding a fourth reference adds only the list's slot
    more = deep_sizeof({"v": vocabulary, "again": [word, (word,), word]})
    assert more - size == 8
