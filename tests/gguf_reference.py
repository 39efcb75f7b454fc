"""The gguf package's own reader, as the reference the fast header reader is compared with."""


def reader_class():
    """gguf.GGUFReader, for tests that compare against it (slow: seconds on a large vocabulary)."""
    import numpy as np
    from gguf import GGUFReader

    class Reader(GGUFReader):
        """GGUFReader on a plain ndarray view of its memory map: the same mapped pages, but
        slicing skips np.memmap's per-slice bookkeeping, which made a 262k-token vocabulary
        take 9 s to parse instead of 2."""

        @property
        def data(self):
            return self._mapped

        @data.setter
        def data(self, v):
            self._mapped = v.view(np.ndarray) if isinstance(v, np.memmap) else v

    return Reader
