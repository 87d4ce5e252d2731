"""Tokens, calls and cost in USD, per model call and per task.

Cost comes from `genai-prices` (an offline price table). A model it does not know (a local
model, a test double, a self-hosted endpoint) costs `0.0` and is marked `priced=False`, so a
budget is never silently enforced on guesses.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

__all__ = ("Usage", "price")


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    """What a task (or one call) has used so far."""

    requests: int = 0
    """Model calls answered (failed attempts that were retried are `model_retried` events)."""
    tool_calls: int = 0
    """Tool calls run."""
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    """Cost in US dollars, from the providers' published prices."""
    priced: bool = True
    """`False` once a call could not be priced (an unknown or local model)."""

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def add_request(self, input_tokens: int, output_tokens: int, cost: float | None) -> Usage:
        """This usage plus one model call (`cost=None`: it could not be priced)."""
        return replace(
            self,
            requests=self.requests + 1,
            input_tokens=self.input_tokens + input_tokens,
            output_tokens=self.output_tokens + output_tokens,
            cost_usd=self.cost_usd + (cost or 0.0),
            priced=self.priced and cost is not None,
        )

    def add_tool_calls(self, n: int = 1) -> Usage:
        return replace(self, tool_calls=self.tool_calls + n)

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            requests=self.requests + other.requests,
            tool_calls=self.tool_calls + other.tool_calls,
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cost_usd=self.cost_usd + other.cost_usd,
            priced=self.priced and other.priced,
        )

    def to_json(self) -> dict[str, int | float | bool]:
        return {
            "requests": self.requests,
            "tool_calls": self.tool_calls,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": round(self.cost_usd, 10),
            "priced": self.priced,
        }

    @classmethod
    def from_json(cls, data: dict[str, int | float | bool]) -> Usage:
        return cls(
            requests=int(data.get("requests", 0)),
            tool_calls=int(data.get("tool_calls", 0)),
            input_tokens=int(data.get("input_tokens", 0)),
            output_tokens=int(data.get("output_tokens", 0)),
            cost_usd=float(data.get("cost_usd", 0.0)),
            priced=bool(data.get("priced", True)),
        )


def price(
    provider: str,
    model_name: str,
    *,
    input_tokens: int,
    output_tokens: int,
    cache_read_tokens: int = 0,
    cache_write_tokens: int = 0,
) -> float | None:
    """The USD cost of one call, or `None` when the price table does not know the model.

    Test models cost nothing; local models are unpriced.
    """
    if provider == "test":
        return 0.0
    if provider == "local":
        return None
    # imported here: the price table is large and only needed once a provider answered
    from genai_prices import Usage as PriceUsage
    from genai_prices import calc_price

    try:
        result = calc_price(
            PriceUsage(
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cache_read_tokens=cache_read_tokens or None,
                cache_write_tokens=cache_write_tokens or None,
            ),
            model_name,
            provider_id=provider,
        )
    except LookupError:
        return None
    total: Decimal = result.total_price
    return float(total)
