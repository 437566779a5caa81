"""The in-memory cache store: blocks of vectors, least recently used evicted first."""

import threading
from collections import OrderedDict

import numpy as np

from ._store import _ROW_BITS, CacheStore, shape_conflict

# A memory block holds at most this many rows, so that eviction, which drops
# whole blocks, never throws away much more than it must.
_BLOCK_ROWS = 1024
# Python overhead per indexed key (dict slot, 16-byte bytes object, int).
_KEY_OVERHEAD = 120


class MemoryStore(CacheStore):
    """Blocks of vectors with a per-fingerprint ``key -> (block, row)`` index.

    Eviction is least-recently-used by block: a lookup touches the blocks it
    reads, and the oldest blocks are dropped while the total exceeds the bound.
    Lookups gather rows with numpy, one pass per block.
    """

    def __init__(self, max_memory_mb):
        self.max_bytes = None if max_memory_mb is None else int(max_memory_mb * 2**20)
        self.index = {}  # fingerprint -> {key: block_id << _ROW_BITS | row}
        self.layout = {}  # fingerprint -> (n_features, dtype)
        self.blocks = OrderedDict()  # block_id -> (fingerprint, array, keys), oldest first
        self.next_block = 0
        self.nbytes = 0
        self.evictions = 0
        self.lock = threading.RLock()

    def fetch(self, fingerprint, keys):
        found = np.zeros(len(keys), dtype=bool)
        with self.lock:
            index = self.index.get(fingerprint)
            if index is None:
                return None, found
            n_features, dtype = self.layout[fingerprint]
            get = index.get
            codes = np.fromiter((get(key, -1) for key in keys), np.int64, len(keys))
            found[:] = codes >= 0
            vectors = (np.empty if found.all() else np.zeros)((len(keys), n_features), dtype)
            if not found.any():
                return vectors, found
            targets = np.flatnonzero(found)
            codes = codes[targets]
            order = np.argsort(codes >> _ROW_BITS, kind="stable")
            targets, codes = targets[order], codes[order]
            block_ids, starts = np.unique(codes >> _ROW_BITS, return_index=True)
            stops = [*starts[1:], codes.size]
            rows = codes & ((1 << _ROW_BITS) - 1)
            for block_id, start, stop in zip(block_ids.tolist(), starts, stops):
                self.blocks.move_to_end(block_id)
                vectors[targets[start:stop]] = self.blocks[block_id][1][rows[start:stop]]
        return vectors, found

    def put(self, fingerprint, keys, vectors):
        n_features, dtype = vectors.shape[1], vectors.dtype
        with self.lock:
            layout = self.layout.get(fingerprint)
            if layout is None:
                self.layout[fingerprint] = (n_features, dtype)
                self.index[fingerprint] = {}
            elif layout != (n_features, dtype):
                raise shape_conflict(fingerprint, layout, (n_features, dtype))
            index = self.index[fingerprint]
            # Keep the first vector of a key, and of a key repeated in ``keys``.
            fresh = {}
            for i, key in enumerate(keys):
                if key not in index and key not in fresh:
                    fresh[key] = i
            if fresh:
                new_keys = list(fresh)
                new_rows = np.fromiter(fresh.values(), np.intp, len(fresh))
                for start in range(0, len(new_keys), _BLOCK_ROWS):
                    self._add_block(
                        fingerprint,
                        new_keys[start : start + _BLOCK_ROWS],
                        vectors[new_rows[start : start + _BLOCK_ROWS]],
                    )
            self._evict()

    def _add_block(self, fingerprint, keys, block):
        block_id = self.next_block
        self.next_block += 1
        self.blocks[block_id] = (fingerprint, block, keys)
        base = block_id << _ROW_BITS
        self.index[fingerprint].update(zip(keys, range(base, base + len(keys))))
        self.nbytes += _block_bytes(block, keys)

    def _drop_block(self, block_id):
        fingerprint, block, keys = self.blocks.pop(block_id)
        index = self.index[fingerprint]
        for key in keys:
            del index[key]
        if not index:
            del self.index[fingerprint]
            del self.layout[fingerprint]
        self.nbytes -= _block_bytes(block, keys)

    def _evict(self):
        if self.max_bytes is None:
            return
        while self.nbytes > self.max_bytes and self.blocks:
            oldest = next(iter(self.blocks))
            self.evictions += len(self.blocks[oldest][2])
            self._drop_block(oldest)

    def clear(self, fingerprint):
        with self.lock:
            if fingerprint is None:
                self.index.clear()
                self.layout.clear()
                self.blocks.clear()
                self.nbytes = 0
                return
            doomed = [bid for bid, (fp, _, _) in self.blocks.items() if fp == fingerprint]
            for block_id in doomed:
                self._drop_block(block_id)

    def count(self):
        with self.lock:
            return sum(len(index) for index in self.index.values())

    def info(self):
        with self.lock:
            return [
                {
                    "fingerprint": fingerprint,
                    "entries": len(index),
                    "n_features": self.layout[fingerprint][0],
                    "dtype": str(self.layout[fingerprint][1]),
                    "nbytes": len(index)
                    * self.layout[fingerprint][0]
                    * self.layout[fingerprint][1].itemsize,
                }
                for fingerprint, index in self.index.items()
            ]

    def stats(self):
        with self.lock:
            info = self.info()
            return {
                "entries": sum(item["entries"] for item in info),
                "nbytes": sum(item["nbytes"] for item in info),
                "memory_bytes": self.nbytes,
                "max_bytes": self.max_bytes,
                "evictions": self.evictions,
            }


def _block_bytes(block, keys):
    return block.nbytes + _KEY_OVERHEAD * len(keys)
