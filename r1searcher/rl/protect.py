"""Tag tokens that take no negative advantage (``train.protect_tags``, beyond the paper).

The rollout engine acts on two strings the policy writes: ``<|begin_of_query|>`` and
``<|end_of_query|>``. They are spelt in several tokens (Qwen: `` <|`` ``begin`` ``_of`` ``_query``
``|`` ``>``). A sample's outcome reward reaches every one of its policy tokens, so a sample that
searched three times and was cut by the length cap (the format penalty) pushes the query tags down
three times, while the group's answered samples push them up once or twice. On the 30-minute demo
(seed 0, BENCHMARKS.md "Stopping after the second search") one such step made the policy write
``</begin_of_query|>``: nothing was retrieved again, every group was uniform, and held-out F1 fell
to 0. With protection, a tag token keeps its advantage when positive and gets 0 when negative:
the tags are syntax, learned up and never unlearned; what to search, and whether, is still
trained through the thought and query tokens around them (and through the positive samples that
answered instead).

Pure functions: :func:`token_spans` and :func:`tag_positions` on token ids and text,
:func:`protect_advantages` on tensors.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from r1searcher.rollout.stops import decode
from r1searcher.rollout.tags import QUERY_CLOSE, QUERY_OPEN

#: The strings whose tokens are protected: the two the rollout engine parses to search.
PROTECTED_TAGS = (QUERY_OPEN, QUERY_CLOSE)


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
                  tags: Sequence[str] = PROTECTED_TAGS) -> list[int]:
    """Response positions of the policy tokens (``loss_mask`` 1) that overlap a written tag.

    ids, loss_mask: one trajectory's response tokens and mask -> sorted positions. A token that
    holds a tag's last character and more (Qwen's ``>\\n\\n``) is included. Tags are found in the
    decoded text and, for tokenizers that do not decode to what they encoded (WordPiece), as their
    own token ids (as ``rollout/stops.py`` finds the stop strings).
    """
    ids = list(ids)
    text, spans = token_spans(tokenizer, ids)
    hit = [False] * len(ids)
    for tag in tags:
        at = text.find(tag)
        while at >= 0:
            end = at + len(tag)
            for i, (s, e) in enumerate(spans):
                if s < end and e > at:
                    hit[i] = True
            at = text.find(tag, end)
        seq = list(tokenizer.encode(tag, add_special_tokens=False))  # decoders that do not give the text back
        for i in range(len(ids) - len(seq) + 1):
            if seq and ids[i : i + len(seq)] == seq:
                hit[i : i + len(seq)] = [True] * len(seq)
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
