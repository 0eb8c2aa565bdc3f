"""Chat-completion requests in, ``chat.completion`` / ``chat.completion.chunk`` objects out.

Requests follow OpenAI's ``POST /v1/chat/completions``; the last ``user`` message is the question
(system and earlier turns are ignored: the searcher has its own prompt). Read fields: ``model``,
``messages``, ``max_completion_tokens`` / ``max_tokens`` (tokens the model writes; inserted
documents do not count), ``temperature`` (absent or 0: greedy), ``top_p``, ``n`` (1 only),
``stream``, ``stream_options.include_usage``, and two extensions: ``max_searches`` and
``timeout_s`` (at most the server's limits). Other OpenAI fields (``user``, ``seed``, penalties, …)
are accepted and ignored. A malformed body is a 400; a field of the wrong type, out of range or
missing is a 422; every message names the field.

Replies carry what the searcher did in ``choices[0].message.r1searcher`` (streamed: in
``delta.r1searcher``, one chunk per event)::

    {"searches": [{"query": str, "passages": [{"id", "title", "text", "score"}]}],
     "reasoning": str, "trajectory": str, "stop_reason": str, "n_searches": int, ...}
"""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from dataclasses import dataclass

from r1searcher.util.asgi_body import parse_json_object
from r1searcher.rollout.tags import ANSWER_OPEN, THINK_CLOSE, strip_documents


class RequestError(ValueError):
    """A client mistake: a 4xx reply whose OpenAI-style error body carries this message."""

    def __init__(self, message: str, status: int = 422, param: str | None = None):
        super().__init__(message)
        self.status = status
        self.param = param


@dataclass
class ServeLimits:
    """What one request may ask for; anything beyond is refused with a 4xx naming the limit."""

    max_body_bytes: int = 1 << 20
    max_question_chars: int = 8192
    max_tokens: int = 4096  # upper bound of a request's max_tokens
    default_max_tokens: int = 1024
    max_searches: int = 16  # upper bound of a request's max_searches
    default_max_searches: int = 8
    timeout_s: float = 120.0  # upper bound (and default) of a request's time, queue wait included


@dataclass
class ChatRequest:
    """One validated request."""

    question: str
    model: str
    max_tokens: int
    max_searches: int
    timeout_s: float
    greedy: bool = True
    temperature: float = 1.0
    top_p: float = 1.0
    stream: bool = False
    include_usage: bool = False

    @property
    def sampling_key(self) -> tuple:
        """Requests with equal keys can share a batch (one sampler setting per engine call)."""
        return ("greedy",) if self.greedy else ("sample", self.temperature, self.top_p)


def error_body(message: str, status: int, param: str | None = None) -> dict:
    """OpenAI's error object (the ``openai`` client reads ``error.message``)."""
    kind = {429: "rate_limit_error", 503: "service_unavailable", 504: "timeout"}.get(
        status, "invalid_request_error" if status < 500 else "server_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}


def parse_body(raw: bytes, limits: ServeLimits) -> dict:
    """The JSON object of a request body (400 when it is not one)."""
    return parse_json_object(raw, limits.max_body_bytes, RequestError)


def _int(body: dict, name: str, default: int, lo: int, hi: int) -> int:
    v = body.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int):
        raise RequestError(f"'{name}' must be an integer, got {type(v).__name__}", param=name)
    if not lo <= v <= hi:
        raise RequestError(f"'{name}' is {v}; it must be between {lo} and {hi}", param=name)
    return v


def _number(body: dict, name: str, lo: float, hi: float, lo_open: bool = False) -> float | None:
    v = body.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise RequestError(f"'{name}' must be a number, got {json.dumps(v)[:40]}", param=name)
    if v > hi or v < lo or (lo_open and v == lo):
        raise RequestError(f"'{name}' is {v}; it must be in {'(' if lo_open else '['}{lo}, {hi}]", param=name)
    return float(v)


def _text(content, where: str) -> str:
    """A message's text: a string, or the text parts of a content list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for i, part in enumerate(content):
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                raise RequestError(f"{where}.content[{i}] must be an object with a 'type'", param="messages")
            if part["type"] != "text":
                raise RequestError(f"{where}.content[{i}] is of type {part['type']!r}; only 'text' is supported",
                                   param="messages")
            if not isinstance(part.get("text"), str):
                raise RequestError(f"{where}.content[{i}].text must be a string", param="messages")
            parts.append(part["text"])
        return "".join(parts)
    raise RequestError(f"{where}.content must be a string or a list of text parts, got {type(content).__name__}",
                       param="messages")


def question_of(messages, limits: ServeLimits) -> str:
    """The last user message's text (422 when there is none, it is empty or too long)."""
    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' must be a non-empty list of messages", param="messages")
    question = None
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise RequestError(f"messages[{i}] must be an object, got {type(m).__name__}", param="messages")
        role = m.get("role")
        if not isinstance(role, str):
            raise RequestError(f"messages[{i}].role must be a string", param="messages")
        if role == "user":
            question = _text(m.get("content"), f"messages[{i}]")
    if question is None:
        raise RequestError("no user message: the last message with role 'user' is the question", param="messages")
    question = question.strip()
    if not question:
        raise RequestError("the last user message is empty", param="messages")
    if len(question) > limits.max_question_chars:
        raise RequestError(f"the question is {len(question)} characters; the limit is {limits.max_question_chars}",
                           413, param="messages")
    try:
        question.encode("utf-8")
    except UnicodeEncodeError:
        raise RequestError("the question is not valid Unicode (a lone surrogate)", param="messages") from None
    return question


def parse_request(body: dict, limits: ServeLimits, model_id: str) -> ChatRequest:
    """Validate a chat-completion body against ``limits``; the model must be the served one."""
    model = body.get("model", model_id)
    if not isinstance(model, str):
        raise RequestError(f"'model' must be a string, got {type(model).__name__}", param="model")
    if model != model_id:
        raise RequestError(f"model {model!r} is not served here; this server serves {model_id!r}", 404, param="model")
    question = question_of(body.get("messages"), limits)
    if "max_completion_tokens" in body and body["max_completion_tokens"] is not None:
        max_tokens = _int(body, "max_completion_tokens", limits.default_max_tokens, 1, limits.max_tokens)
    else:
        max_tokens = _int(body, "max_tokens", limits.default_max_tokens, 1, limits.max_tokens)
    max_searches = _int(body, "max_searches", limits.default_max_searches, 0, limits.max_searches)
    _int(body, "n", 1, 1, 1)
    temperature = _number(body, "temperature", 0.0, 2.0)
    top_p = _number(body, "top_p", 0.0, 1.0, lo_open=True)
    timeout = _number(body, "timeout_s", 0.0, limits.timeout_s, lo_open=True)
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise RequestError("'stream' must be true or false", param="stream")
    opts = body.get("stream_options") or {}
    if not isinstance(opts, dict):
        raise RequestError("'stream_options' must be an object", param="stream_options")
    include_usage = opts.get("include_usage", False)
    if not isinstance(include_usage, bool):
        raise RequestError("'stream_options.include_usage' must be true or false", param="stream_options")
    greedy = temperature is None or temperature == 0.0
    return ChatRequest(
        question=question, model=model_id, max_tokens=max_tokens, max_searches=max_searches,
        timeout_s=timeout if timeout is not None else limits.timeout_s, greedy=greedy,
        temperature=1.0 if greedy else float(temperature), top_p=1.0 if top_p is None else top_p,
        stream=stream, include_usage=include_usage,
    )


# ---------------------------------------------------------------------------------------- replies
def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def reasoning_of(text: str) -> str:
    """The model's reasoning: the trajectory before ``</think>`` / ``<answer>``, documents removed."""
    head = text.split(THINK_CLOSE)[0].split(ANSWER_OPEN)[0]
    return re.sub(r"[ \t]*\n{3,}", "\n\n", strip_documents(head)).strip()


def passage_dicts(passages) -> list[dict]:
    return [p.to_dict() for p in passages]


def finish_reason(stop_reason: str) -> str:
    """OpenAI's finish reason: ``stop`` when the model ended (answer or EOS), ``length`` otherwise."""
    return "stop" if stop_reason in ("answer", "eos") else "length"


def extension(traj, end_reason: str | None = None, timings: dict | None = None) -> dict:
    """The ``r1searcher`` field: searches with their passages, reasoning, the whole trajectory."""
    return {
        "searches": [{"query": q, "passages": passage_dicts(ps)} for q, ps in zip(traj.queries, traj.passages)],
        "n_searches": traj.n_searches,
        "reasoning": reasoning_of(traj.text),
        "trajectory": traj.text,
        "stop_reason": end_reason or traj.stop_reason,
        "answered": traj.answer is not None,
        "inserted_tokens": len(traj.response_ids) - traj.n_policy_tokens,
        **(timings or {}),
    }


def usage(traj) -> dict:
    """Prompt tokens; completion tokens = tokens the model wrote (inserted documents excluded)."""
    written = traj.n_policy_tokens
    return {"prompt_tokens": len(traj.prompt_ids), "completion_tokens": written,
            "total_tokens": len(traj.prompt_ids) + written}


def completion(cid: str, created: int, model: str, traj, end_reason: str | None, timings: dict) -> dict:
    """The ``chat.completion`` object; content is the final answer ("" when none was given)."""
    reason = end_reason or traj.stop_reason
    return {
        "id": cid, "object": "chat.completion", "created": created, "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": traj.answer or "",
                        "r1searcher": extension(traj, end_reason, timings)},
            "finish_reason": finish_reason(reason), "logprobs": None,
        }],
        "usage": usage(traj),
    }


def chunk(cid: str, created: int, model: str, delta: dict, finish: str | None = None,
          usage_: dict | None = None, choices: bool = True) -> dict:
    """One ``chat.completion.chunk``; ``choices=False`` gives the usage-only last chunk."""
    out = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}] if choices else []}
    if usage_ is not None:
        out["usage"] = usage_
    return out


def now() -> int:
    return int(time.time())
