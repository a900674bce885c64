"""One Responses API turn against the gateway's stored responses (``accounting/responses.py``).

``open_turn`` resolves ``previous_response_id`` into the history the upstream is sent, and the
``Turn`` it returns keeps the response once answered, when the client asked to ``store`` it (the
API's default). The client's body stays ``raw`` with the history in place of ``input``; an OpenAI
Responses upstream is then sent that whole conversation with ``store: false`` and without the id,
which it could not resolve (``adapters/responses.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..accounting.responses import ChainTooLong, ResponseStore, input_items
from ..errors import InvalidRequest, UnknownResource
from ..types import ChatRequest
from .responses import decode, new_response_id


@dataclass(slots=True)
class Turn:
    rid: str
    scope: str
    previous: str | None
    store: bool
    items: list
    saved: bool = False

    async def save(self, responses: ResponseStore, response: dict) -> None:
        if self.store and not self.saved and response.get("status") in ("completed", "incomplete"):
            self.saved = True
            await responses.put(self.scope, self.rid, self.previous, self.items, response)


def not_found(rid: str, param: str | None = None) -> UnknownResource:
    """OpenAI's words for an id it does not have (the same for one of another key's)."""
    return UnknownResource(f"Response with id '{rid[:100]}' not found.", param=param)


async def open_turn(responses: ResponseStore, body: object, scope: str) -> tuple[ChatRequest, Turn]:
    prev = body.get("previous_response_id") if type(body) is dict else None
    history = None
    if prev is not None:
        if type(prev) is not str or not prev:
            raise InvalidRequest("'previous_response_id' must be a non-empty string", param="previous_response_id")
        try:
            history = await responses.history(scope, prev)
        except ChainTooLong as e:
            raise InvalidRequest(str(e), param="previous_response_id") from None
        if history is None:
            raise UnknownResource(f"Previous response with id '{prev[:100]}' not found.", param="previous_response_id")
    creq = decode(body, history)
    items = input_items(body)  # type: ignore[arg-type]
    if history:
        creq.raw = {**body, "input": history + items}  # type: ignore[dict-item]
    store = body.get("store", True) is not False  # type: ignore[union-attr]
    return creq, Turn(new_response_id(), scope, prev, store, items)
