"""Accounting: the ledger, virtual keys, budgets, rate limits and the state they share.

The gateway uses one ``Accountant`` (``facade.py``); everything else here is its parts:

- ``records``: ``RequestRecord``/``AttemptRecord`` and money arithmetic (Decimal; picodollars stored)
- ``ledger``: batched, bounded, spill-never-drop writes to a ``Store`` (``sqlite``, ``postgres``)
- ``keys``: virtual keys, stored hashed; ``KeyRing`` keeps every worker's view within a second
- ``budgets``: rules, periods and the holds a request takes
- ``state``: ``MemoryState`` and (``redis_state``) ``RedisState``: atomic admit/settle
- ``settings``: the ``ledger``, ``state`` and ``budgets`` config sections
- ``admin``, ``cli``: ``/admin/keys``, ``/admin/spend``, ``/admin/budgets``; ``switchman keys``, ``switchman spend``
"""

from .errors import BudgetExceeded, RateLimited, StateUnavailable
from .facade import Accountant, Admission, AdmissionContext
from .records import AttemptRecord, RequestRecord, Role, parse_tags
from .settings import AccountingSettings, parse

__all__ = [
    "Accountant", "AccountingSettings", "Admission", "AdmissionContext", "AttemptRecord", "BudgetExceeded",
    "RateLimited", "RequestRecord", "Role", "StateUnavailable", "parse", "parse_tags",
]
