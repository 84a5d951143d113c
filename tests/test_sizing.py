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
