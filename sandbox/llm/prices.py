"""Token prices, in US dollars per million input / output tokens.

The built-in table is a small starting point (list prices published by the
provider; check them before relying on a cost budget). Users extend or override
it with a YAML or JSON file, given by `--prices FILE` or `SANDBOX_PRICES`:

    gpt-4.1: {input: 2.0, output: 8.0}
    my-local-model: {input: 0, output: 0}

A model missing from the table costs 0 and a warning is logged once, so a
cost budget never silently means something it does not.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sandbox.errors import ModelSpecError
from sandbox.events import Usage
from sandbox.logs import get_logger

PRICES_ENV = "SANDBOX_PRICES"
_log = get_logger(__name__)


class Price(BaseModel):
    """Dollars per million tokens."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: float = Field(ge=0)
    output: float = Field(ge=0)


BUILTIN_PRICES: dict[str, Price] = {
    "gpt-4.1": Price(input=2.0, output=8.0),
    "gpt-4.1-mini": Price(input=0.4, output=1.6),
    "gpt-4.1-nano": Price(input=0.1, output=0.4),
    "gpt-4o": Price(input=2.5, output=10.0),
    "gpt-4o-mini": Price(input=0.15, output=0.6),
}


class PriceTable:
    """Looks up a model's price (exact name first, then the longest matching prefix)."""

    def __init__(self, prices: Mapping[str, Price] | None = None) -> None:
        self.prices: dict[str, Price] = dict(BUILTIN_PRICES if prices is None else prices)
        self._warned: set[str] = set()

    def price(self, model: str) -> Price | None:
        """The price of `model`, or None when unknown."""
        if model in self.prices:
            return self.prices[model]
        best = max((k for k in self.prices if model.startswith(k)), key=len, default=None)
        return self.prices[best] if best is not None else None

    def cost(self, model: str, usage: Usage) -> float:
        """Dollars for `usage` of `model` (0 for unknown models, with one warning)."""
        p = self.price(model)
        if p is None:
            if model not in self._warned:
                self._warned.add(model)
                _log.warning("no price for model; cost counted as 0", model=model)
            return 0.0
        return (usage.input_tokens * p.input + usage.output_tokens * p.output) / 1_000_000


def load_prices(path: str | Path | None = None) -> PriceTable:
    """The built-in table extended by `path` (or $SANDBOX_PRICES when path is None)."""
    table = PriceTable()
    source = path if path is not None else os.environ.get(PRICES_ENV)
    if not source:
        return table
    p = Path(source)
    try:
        text = p.read_text(encoding="utf-8")
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ModelSpecError(f"{p}: cannot read price table: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelSpecError(f"{p}: a price table maps model names to {{input, output}}")
    for name, entry in data.items():
        try:
            table.prices[str(name)] = Price.model_validate(entry)
        except ValidationError as exc:
            raise ModelSpecError(f"{p}: {name}: {exc.errors()[0]['msg']}") from exc
    return table


__all__ = ["BUILTIN_PRICES", "PRICES_ENV", "Price", "PriceTable", "load_prices"]
