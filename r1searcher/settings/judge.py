"""The ``judge`` section: the LLM judge of ``r1searcher metrics --judge`` (the paper's ACC_L).

Unset endpoint, model and key fall back to ``$R1SEARCHER_JUDGE_*`` (read here, as for every section),
then to ``$OPENAI_BASE_URL`` / ``$OPENAI_API_KEY``, then to OpenAI and ``gpt-4o-mini``, the paper's judge
(:class:`r1searcher.util.chat.ChatClient`). The key is never shown or saved; URL credentials are masked.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from r1searcher.settings.fields import Section, knob

#: The released judge script's reply budget.
PAPER_MAX_TOKENS = 1024


@dataclass(frozen=True, repr=False)
class JudgeConfig(Section):
    """Every knob of :class:`r1searcher.eval.judge.Judge`."""

    SECTION: ClassVar[str] = "judge"
    base_url: str | None = knob(None, "OpenAI-compatible /v1 endpoint (neither set: $OPENAI_BASE_URL, else OpenAI)",
                                env="R1SEARCHER_JUDGE_BASE_URL")
    model: str | None = knob(None, "judge model (neither set: gpt-4o-mini, the paper's)", env="R1SEARCHER_JUDGE_MODEL")
    api_key: str | None = knob(None, "judge API key (neither set: $OPENAI_API_KEY; never shown or saved)",
                               env="R1SEARCHER_JUDGE_API_KEY")
    cache: str | None = knob(None, "SQLite file caching verdicts (unset: judge.sqlite in the cache root)",
                             env="R1SEARCHER_JUDGE_CACHE")
    use_cache: bool = knob(True, "read and write the verdict cache")
    concurrency: int = knob(8, "requests in flight", ge=1)
    timeout_s: float = knob(60.0, "seconds per request", gt=0)
    max_retries: int = knob(4, "retries of a failed request (429, 5xx, timeouts), with exponential backoff", ge=0)
    max_tokens: int = knob(PAPER_MAX_TOKENS, "tokens per verdict (the released script's 1024)", ge=1)
    temperature: float | None = knob(0.0, "sampling temperature (unset: the server's; 0 makes reruns agree)", ge=0)
    strict: bool = knob(False, "count only replies that are exactly 'True' (the paper's rule)")

    def shown(self) -> dict[str, Any]:
        """The settings as a dict fit to print or write (the key masked, URL credentials masked)."""
        from r1searcher.util.redact import MASK, redact_url

        out = asdict(self)
        if out["api_key"]:
            out["api_key"] = MASK
        out["base_url"] = redact_url(out["base_url"])
        return out

    def __repr__(self) -> str:
        return f"JudgeConfig({', '.join(f'{k}={v!r}' for k, v in self.shown().items())})"
