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
