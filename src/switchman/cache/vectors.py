"""Nearest-neighbour search over the semantic cache's vectors: exact (numpy) while a namespace is
small, an HNSW index (usearch) once it holds more than ``ANN_FROM`` vectors.

Measured on this machine (``../shared/research/EMBEDDINGS.md``, 384-d): numpy brute force is 0.5 ms
a query at 10k and 9 ms at 100k; usearch HNSW 0.8-1.5 ms at 100k with recall@1 of 1.0. The switch
point is where brute force stops being the cheaper of the two.
"""

from __future__ import annotations

ANN_FROM = 20_000


class Vectors:
    """Normalised vectors by integer id; ``search`` gives (id, cosine) best first."""

    def __init__(self, dims: int) -> None:
        import numpy as np

        self._np = np
        self.dims = dims
        self.mat = np.zeros((64, dims), np.float32)
        self.ids = np.zeros(64, np.int64)
        self.pos: dict[int, int] = {}
        self.ann = None

    def __len__(self) -> int:
        return len(self.pos)

    def add(self, i: int, v) -> None:
        if self.ann is not None:
            self.ann.add(i, v)
            self.pos[i] = -1
            return
        n = len(self.pos)
        if n == len(self.ids):
            self.mat = self._np.concatenate([self.mat, self._np.zeros_like(self.mat)])
            self.ids = self._np.concatenate([self.ids, self._np.zeros_like(self.ids)])
        self.mat[n] = v
        self.ids[n] = i
        self.pos[i] = n
        if n + 1 > ANN_FROM:
            self._to_ann()

    def _to_ann(self) -> None:
        from usearch.index import Index

        n = len(self.pos)
        self.ann = Index(ndim=self.dims, metric="cos", dtype="f32", connectivity=16, expansion_add=64,
                         expansion_search=64)
        self.ann.add(self.ids[:n].copy(), self.mat[:n].copy())
        self.pos = dict.fromkeys(self.pos, -1)
        self.mat = self.ids = None  # type: ignore[assignment]

    def remove(self, i: int) -> None:
        p = self.pos.pop(i, None)
        if p is None:
            return
        if self.ann is not None:
            self.ann.remove(i)
            return
        last = len(self.pos)  # the old last row moves into the hole
        if p != last:
            self.mat[p] = self.mat[last]
            self.ids[p] = self.ids[last]
            self.pos[int(self.ids[p])] = p

    def search(self, v, k: int) -> list[tuple[int, float]]:
        n = len(self.pos)
        if n == 0:
            return []
        if self.ann is not None:
            m = self.ann.search(v, min(k, n))
            return [(int(key), 1.0 - float(d)) for key, d in zip(m.keys, m.distances)]
        np = self._np
        sims = self.mat[:n] @ v
        if n > k:
            top = np.argpartition(-sims, k)[:k]
            top = top[np.argsort(-sims[top])]
        else:
            top = np.argsort(-sims)
        return [(int(self.ids[j]), float(sims[j])) for j in top]
