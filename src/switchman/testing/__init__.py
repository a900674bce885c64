"""Test doubles that run the production code: a fake upstream speaking the vendors' wire APIs,
and the simulated fleet ``switchman demo`` runs on.

    from switchman.testing import FakeModel, FakeUpstream

Names are imported lazily, so ``python -m switchman.testing.fake_upstream`` does not import its own
module twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .fake_upstream import FakeModel, FakeUpstream, ModelStats, RecordedRequest
    from .fleet import demo_models

__all__ = ["FakeModel", "FakeUpstream", "ModelStats", "RecordedRequest", "demo_models"]

_WHERE = {"FakeModel": "fake_upstream", "FakeUpstream": "fake_upstream", "ModelStats": "fake_upstream",
          "RecordedRequest": "fake_upstream", "demo_models": "fleet"}


def __getattr__(name: str):
    mod = _WHERE.get(name)
    if mod is None:
        raise AttributeError(f"module 'switchman.testing' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f".{mod}", __name__), name)
