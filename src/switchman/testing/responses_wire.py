"""OpenAI's Responses API as the fake upstream speaks it: ``POST /v1/responses``.

Shapes follow the installed ``openai`` SDK's ``types/responses/`` (``response.py``,
``response_usage.py``, ``response_stream_event.py``), which the tests parse the fake's answers
with. Requests are read as OpenAI reads them: ``input`` a string or items (messages,
``function_call``, ``function_call_output``; anything else, such as a built-in tool's call item,
is carried and counted as text), ``instructions``, flattened function tools, ``tool_choice``,
``max_output_tokens`` (at least 16, as the API insists). A built-in tool offered (``web_search``
and the like) is "run": the answer starts with a ``web_search_call`` item, as OpenAI's does.
Errors are the Chat Completions wire's; a failure mid-stream is an ``error`` event.
"""

from __future__ import annotations

import orjson

from .wires import Answer, BadRequest, Call, OpenAIWire, _over, _text_of

_STATUS = {"stop": ("completed", None), "tool": ("completed", None), "length": ("incomplete", "max_output_tokens")}


def _item_text(item: dict) -> str:
    if "content" in item:
        c = item.get("content")
        if type(c) is list:  # input_text / output_text parts
            return "".join(p.get("text") or "" for p in c if type(p) is dict and type(p.get("text")) in (str, type(None)))
        return _text_of(c)
    out = item.get("output")
    if type(out) is str:
        return out
    return item.get("arguments") if type(item.get("arguments")) is str else ""


class ResponsesWire(OpenAIWire):
    name = "responses"

    def __init__(self) -> None:
        super().__init__()
        self.name = "responses"

    def read(self, d: dict, path_model: str | None, path_stream: bool, query: str) -> Call:
        model = d.get("model")
        if type(model) is not str or not model:
            raise BadRequest("Missing required parameter: 'model'.", "model")
        inp = d.get("input")
        if type(inp) is str:
            inp = [{"role": "user", "content": inp}]
        if type(inp) is not list or not inp:
            raise BadRequest("Missing required parameter: 'input'.", "input")
        chars = len(d.get("instructions") or "") if type(d.get("instructions")) is str else 0
        last_user = ""
        for item in inp:
            if type(item) is not dict:
                raise BadRequest("Invalid type for 'input': expected an object.", "input")
            if item.get("type") == "reasoning" and not item.get("encrypted_content") and d.get("store") is False:
                raise BadRequest(f"Item with id '{item.get('id')}' not found. Items are not persisted when `store` "
                                 "is set to false. Try again with `store` set to true, or remove this item from "
                                 "your input.", "input")
            t = _item_text(item)
            chars += len(t)
            if item.get("role") == "user":
                last_user = t
        mt = d.get("max_output_tokens")
        if type(mt) is int and mt < 16:
            raise BadRequest(f"Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, "
                             f"but got {mt} instead.", "max_output_tokens")
        if d.get("stop") is not None:
            raise BadRequest("Unsupported parameter: 'stop'.", "stop")
        tools = [t for t in d.get("tools") or () if type(t) is dict]
        functions = [t for t in tools if t.get("type") == "function"]
        choice = d.get("tool_choice")
        tool = None
        if functions and choice != "none":
            tool = choice.get("name") if type(choice) is dict and choice.get("type") == "function" else None
            tool = tool or functions[0].get("name")
        return Call(model, bool(d.get("stream")), chars, last_user, tool, mt if type(mt) is int else None,
                    include_usage=True, logprobs="message.output_text.logprobs" in (d.get("include") or ()),
                    searches=any(str(t.get("type", "")).startswith("web_search") for t in tools))

    def stream_error(self, status, code, message):
        e = orjson.loads(self.error(status, code, message)[1])["error"]
        return b"event: error\ndata: " + orjson.dumps({"type": "error", "code": e["code"] or e["type"],
                                                       "message": e["message"], "param": None,
                                                       "sequence_number": 0}) + b"\n\n"

    @staticmethod
    def _usage(a: Answer) -> dict:
        return _over({
            "input_tokens": a.input_tokens,
            "input_tokens_details": {"cached_tokens": a.cache_read},
            "output_tokens": a.output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": a.input_tokens + a.output_tokens,
        }, a)

    @staticmethod
    def _item(a: Answer, done: bool) -> dict:
        status = "completed" if done else "in_progress"
        if a.tool is not None:
            return {"id": "fc_" + a.id[-16:], "type": "function_call", "status": status, "call_id": a.call_id,
                    "name": a.tool, "arguments": a.text if done else ""}
        part = {"type": "output_text", "text": a.text if done else "", "annotations": [],
                "logprobs": [] if a.logprob is None or not done else [
                    {"token": p, "logprob": a.logprob, "bytes": [], "top_logprobs": []} for p in a.pieces]}
        return {"id": "msg_" + a.id[-16:], "type": "message", "role": "assistant", "status": status,
                "content": [part] if done else []}

    def _response(self, a: Answer, status: str, output: list) -> dict:
        why = _STATUS[a.finish][1] if status == "incomplete" else None
        return {"id": "resp_" + a.id[-16:], "object": "response", "created_at": a.created, "status": status,
                "background": False, "error": None, "incomplete_details": {"reason": why} if why else None,
                "instructions": None, "max_output_tokens": None, "model": a.model, "output": output,
                "parallel_tool_calls": True, "previous_response_id": None,
                "reasoning": {"effort": None, "summary": None}, "store": False, "temperature": 1.0,
                "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [], "top_p": 1.0,
                "truncation": "disabled",
                "usage": self._usage(a) if status not in ("in_progress", "queued") else None,
                "user": None, "metadata": {}}

    @staticmethod
    def _search(a: Answer) -> dict:
        return {"id": "ws_" + a.id[-16:], "type": "web_search_call", "status": "completed",
                "action": {"type": "search", "query": "fake"}}

    def body(self, a):
        out = [self._search(a)] * a.searches + [self._item(a, True)]
        return orjson.dumps(self._response(a, _STATUS[a.finish][0], out))

    def frames(self, a):
        seq = iter(range(1 << 30))

        def ev(type_: str, **fields) -> bytes:
            d = {"type": type_, "sequence_number": next(seq), **fields}
            return b"event: " + type_.encode() + b"\ndata: " + orjson.dumps(d) + b"\n\n"

        item = self._item(a, False)
        at = int(a.searches)  # the message or call's output index, after the search item
        head = [ev("response.created", response=self._response(a, "in_progress", [])),
                ev("response.in_progress", response=self._response(a, "in_progress", []))]
        if a.searches:
            search = self._search(a)
            head += [ev("response.output_item.added", output_index=0, item={**search, "status": "in_progress"}),
                     ev("response.web_search_call.in_progress", item_id=search["id"], output_index=0),
                     ev("response.web_search_call.searching", item_id=search["id"], output_index=0),
                     ev("response.web_search_call.completed", item_id=search["id"], output_index=0),
                     ev("response.output_item.done", output_index=0, item=search)]
        head.append(ev("response.output_item.added", output_index=at, item=item))
        if a.tool is not None:
            content = [ev("response.function_call_arguments.delta", item_id=item["id"], output_index=at, delta=p)
                       for p in a.pieces]
            tail = [ev("response.function_call_arguments.done", item_id=item["id"], output_index=at, name=a.tool,
                       arguments=a.text)]
        else:
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            head.append(ev("response.content_part.added", item_id=item["id"], output_index=at, content_index=0,
                           part=part))
            content = [ev("response.output_text.delta", item_id=item["id"], output_index=at, content_index=0,
                          delta=p, logprobs=[]) for p in a.pieces]
            tail = [ev("response.output_text.done", item_id=item["id"], output_index=at, content_index=0,
                       text=a.text, logprobs=[]),
                    ev("response.content_part.done", item_id=item["id"], output_index=at, content_index=0,
                       part={**part, "text": a.text})]
        done = self._item(a, True)
        status = _STATUS[a.finish][0]
        output = [self._search(a)] * a.searches + [done]
        tail += [ev("response.output_item.done", output_index=at, item=done),
                 ev(f"response.{status}", response=self._response(a, status, output))]
        return head, content, tail
