"""Tag tokens that take no negative advantage (``train.protect_tags``, beyond the paper).

The rollout engine acts on two strings the policy writes: ``<|begin_of_query|>`` and
``<|end_of_query|>``. They are spelt in several tokens (Qwen: `` <|`` ``begin`` ``_of`` ``_query``
``|`` ``>``). A sample's outcome reward reaches every one of its policy tokens, so a sample that
searched three times and was cut by the length cap (the format penalty) pushes the query tags down
three times, while the group's answered samples push them up once or twice. On the 30-minute demo
(seed 0, BENCHMARKS.md "Stopping after the second search") one such step made the policy write
``</begin_of_query|>``: nothing was retrieved again, every group was uniform, and held-out F1 fell
to 0. With protection, a tag token keeps its advantage when positive and gets 0 when negative:
the tags are syntax, learned up and never unlearned. The query's first token is left out: it is the
decision to search, and protecting it too (every tag token, seed 0 again) took away the only push
against searching on: length cuts rose to half the samples and the held-out slice fell. What to
search is still trained through the query's words.

Pure functions: :func:`token_spans` and :func:`tag_positions` on token ids and text,
:func:`protect_advantages` on tensors.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from r1searcher.rollout.stops import decode
from r1searcher.rollout.tags import QUERY_CLOSE, QUERY_OPEN

#: The strings whose tokens are protected (the two the rollout engine parses to search), each with
#: whether its first token stays trainable: the token that opens a query is the decision to search,
#: and a sample cut after a third search must still push it down; the rest of that tag is spelling,
#: and ``<|end_of_query|>`` (which only closes what was opened) is spelling from its first token.
PROTECTED_TAGS: dict[str, bool] = {QUERY_OPEN: True, QUERY_CLOSE: False}


def token_spans(tokenizer, ids: Sequence[int]) -> tuple[str, list[tuple[int, int]]]:
    """The decoded text of ``ids`` and each token's character span ``[start, end)`` in it.

    Tokens decoded one by one give the spans when they join to the whole text (byte-level BPE on
    ASCII); otherwise (a character split over tokens, a tokenizer that adds or drops spaces when
    decoding alone) each token's end is where the decoded prefix ending at it ends, so a token that
    completes a character owns it. Spans tile the text: ``spans[i][1] == spans[i + 1][0]``.
    """
    ids = list(ids)
    text = decode(tokenizer, ids)
    pieces = [decode(tokenizer, [i]) for i in ids]
    if "".join(pieces) == text:
        ends, n = [], 0
        for p in pieces:
            n += len(p)
            ends.append(n)
    else:
        ends, n = [], 0
        for i in range(len(ids)):  # a prefix cut inside a character may decode longer than it ends
            n = min(max(n, len(decode(tokenizer, ids[: i + 1]))), len(text))
            ends.append(n)
    starts = [0] + ends[:-1]
    return text, list(zip(starts, ends))


def tag_positions(tokenizer, ids: Sequence[int], loss_mask: Sequence[int],
                  tags: dict[str, bool] | None = None) -> list[int]:
    """Response positions of the policy tokens (``loss_mask`` 1) that spell a written tag.

    ids, loss_mask: one trajectory's response tokens and mask -> sorted positions. ``tags`` maps
    each tag to whether its first token (the one holding its first character) is left out
    (default :data:`PROTECTED_TAGS`). A token that holds a tag's last character and more (Qwen's
    ``>\\n\\n``) is included. Tags are found in the decoded text and, for tokenizers that do not
    decode to what they encoded (WordPiece), as their own token ids (as ``rollout/stops.py`` finds
    the stop strings).
    """
    ids = list(ids)
    text, spans = token_spans(tokenizer, ids)
    hit = [False] * len(ids)
    for tag, skip_first in (PROTECTED_TAGS if tags is None else tags).items():
        at = text.find(tag)
        while at >= 0:
            end = at + len(tag)
            for i, (s, e) in enumerate(spans):
                if s < end and e > at and not (skip_first and s <= at < e):
                    hit[i] = True
            at = text.find(tag, end)
        seq = list(tokenizer.encode(tag, add_special_tokens=False))  # decoders that do not give the text back
        for i in range(len(ids) - len(seq) + 1):
            if seq and ids[i : i + len(seq)] == seq:
                first = i + 1 if skip_first else i
                hit[first : i + len(seq)] = [True] * (i + len(seq) - first)
    return [i for i, h in enumerate(hit) if h and loss_mask[i]]


def protect_mask(tokenizer, trajs, T: int) -> torch.Tensor:
    """[B, T] bool: True at the protected tag tokens of each trajectory (response space)."""
    out = torch.zeros(len(trajs), T, dtype=torch.bool)
    for b, tr in enumerate(trajs):
        pos = tag_positions(tokenizer, tr.response_ids, tr.loss_mask)
        if pos:
            out[b, torch.tensor(pos, dtype=torch.long)] = True
    return out


def protect_advantages(adv: torch.Tensor, protect: torch.Tensor) -> torch.Tensor:
    """adv [B, T] float, protect [B, T] bool -> adv with its negative entries at ``protect`` set to 0."""
    return torch.where(protect & (adv < 0), torch.zeros_like(adv), adv)
