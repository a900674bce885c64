"""The file form of trained routing models (routers, answer scorers): one ``.npz`` of numpy
arrays plus a JSON ``meta`` array naming the format and its version, saved compressed and read
with ``allow_pickle=False``, so that loading a model file never runs code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson


class ModelFileError(Exception):
    """A model file that is missing, of another format or version, or damaged."""


def save_npz(path: str | Path, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as f:
        np.savez_compressed(f, meta=np.frombuffer(orjson.dumps(meta), dtype=np.uint8), **arrays)


def load_npz(path: str | Path, fmt: str, version: int, what: str, error: type[ModelFileError] = ModelFileError) -> tuple[dict, dict[str, np.ndarray]]:
    """``(meta, arrays)`` of a file written by :func:`save_npz` with ``meta["format"] == fmt``;
    anything else raises ``error`` naming the file and, for an old version, saying to retrain."""
    try:
        z = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise error(f"{path}: no such {what} file") from None
    except (OSError, ValueError) as e:
        raise error(f"{path}: not a switchman {what} file ({e})") from None
    with z:
        try:
            meta = orjson.loads(z["meta"].tobytes())
        except (KeyError, ValueError, orjson.JSONDecodeError):
            raise error(f"{path}: not a switchman {what} file") from None
        if not isinstance(meta, dict) or meta.get("format") != fmt:
            raise error(f"{path}: not a switchman {what} file")
        if meta.get("version") != version:
            raise error(f"{path}: {what} format version {meta.get('version')}, this switchman reads {version}; retrain it")
        try:
            arrays = {k: z[k] for k in z.files if k != "meta"}
        except (OSError, ValueError) as e:
            raise error(f"{path}: damaged {what} file ({e})") from None
    return meta, arrays
