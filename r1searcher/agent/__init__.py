"""``r1searcher serve-agent``: the searcher behind an OpenAI-compatible chat-completions API.

One file per job:

* ``schema.py``  parse and validate a chat request (4xx with a message naming the field); build the
  ``chat.completion`` / ``chat.completion.chunk`` objects and the ``r1searcher`` extension field.
* ``engine.py``  :class:`~r1searcher.agent.engine.ServingEngine`, the rollout engine's steps in a
  loop that rows join and leave, with per-request limits (tokens, searches, deadline,
  cancellation) checked at every token, and search events.
* ``batcher.py`` the bounded queue (429 beyond it), the slots, and the one worker thread that runs
  engine sessions and hands them waiting requests.
* ``app.py``     the ASGI app: ``POST /v1/chat/completions`` (JSON or Server-Sent Events),
  ``GET /v1/models``, ``GET /health``.

Why one shared batch: the rollout engine decodes its rows in lock-step and answers paused rows'
queries with one retriever call, so concurrent clients cost little more than one (BENCHMARKS.md,
"Agent service"). Requests join the running batch between decode steps and leave it when their
row ends (continuous batching, ``engine.py``), a searching row does not wait for batch-mates that
write on, and every row ends at the first token after its request's deadline
(``--request-timeout-s``), its ``max_tokens`` or its client's disconnect. So a request waits only
for a free row (``--max-batch`` run at once, each bounded by those limits) or, with a sampling
setting unlike the running batch's, for that batch to drain; never for a long request to finish.
"""
