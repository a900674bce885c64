"""``prefer: headroom``: models near their own ``limits: {rpm, tpm}`` go behind the others before
they start refusing.

Any policy may say it (``policy: {kind: ..., prefer: headroom}``). After the policy has ordered
its models, those that have used ``NEAR`` (80%) or more of their requests or prompt tokens this
minute move behind the ones with room, keeping the policy's order within each group; the reason
says which and how full. Usage is counted as calls start (``LiveStats.count``), this worker's
exactly and, with ``state: {backend: redis}``, the other workers' as of the last exchange
(``routing/shared.py``). A model at its limit is still skipped by the limiter itself; this only
stops a plan from leaning on it until then.
"""

from __future__ import annotations

NEAR = 0.8


def fullness(model, live) -> float:
    """The larger of the minute's requests over ``rpm`` and prompt tokens over ``tpm`` (0: no limit)."""
    lim = model.limits
    if live is None or not (lim.rpm or lim.tpm):
        return 0.0
    calls, tokens = live.usage(model.name)
    return max(calls / lim.rpm if lim.rpm else 0.0, tokens / lim.tpm if lim.tpm else 0.0)


def prefer_headroom(models: list, reason: str, live) -> tuple[list, str]:
    full = {m.name: fullness(m, live) for m in models}
    near = [m for m in models if full[m.name] >= NEAR]
    if not near or len(near) == len(models):
        return models, reason
    room = [m for m in models if full[m.name] < NEAR]
    if models[0] not in near:
        return [*room, *near], reason
    said = ", ".join(f"{m.name} at {full[m.name]:.0%} of its limit" for m in near[:3])
    return [*room, *near], f"{reason}; headroom: {said}, so {room[0].name} first"
