"""`--model` strings: which model a trial talks to.

    scripted:NAME                the scenario's scripted trajectory NAME (red, benign, ...)
    replay:PATH                  the model outputs recorded in the trial log at PATH
    openai:MODEL                 OpenAI's API (key from OPENAI_API_KEY)
    openai:MODEL@URL             any OpenAI-compatible server, e.g.
                                 openai:Qwen2.5-7B@http://127.0.0.1:8000/v1
    vllm:MODEL[@URL]             a vLLM server (default http://127.0.0.1:8000/v1)
    ollama:MODEL[@URL]           an Ollama server (default http://127.0.0.1:11434/v1)
    MODEL                        same as openai:MODEL

The API key comes from `api_key`, else the environment variable named by
`api_key_env`, else the provider's variable (OPENAI_API_KEY, VLLM_API_KEY,
OLLAMA_API_KEY). Local providers need no key. `base_url` overrides the URL.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.errors import ModelSpecError
from sandbox.llm.base import Model
from sandbox.llm.openai_compat import OpenAICompatModel, RetryPolicy
from sandbox.llm.prices import PriceTable
from sandbox.llm.replay import ReplayModel
from sandbox.llm.scripted import ScriptedModel
from sandbox.llm.trajectory import Trajectory


@dataclass(frozen=True)
class Provider:
    """An OpenAI-compatible provider preset."""

    default_url: str | None  # None: the SDK's default (OpenAI)
    key_env: str
    needs_key: bool


PROVIDERS: dict[str, Provider] = {
    "openai": Provider(None, "OPENAI_API_KEY", needs_key=True),
    "vllm": Provider("http://127.0.0.1:8000/v1", "VLLM_API_KEY", needs_key=False),
    "ollama": Provider("http://127.0.0.1:11434/v1", "OLLAMA_API_KEY", needs_key=False),
}

_WITH_URL = re.compile(r"^(?P<model>[^@]+)@(?P<url>https?://\S+)$")


@dataclass(frozen=True)
class ModelSpec:
    """A parsed `--model` string."""

    kind: str  # scripted, replay, or a provider name
    target: str  # trajectory name, log path, or the API's model name
    base_url: str | None = None

    @property
    def id(self) -> str:
        """The model id written to logs (the base URL is kept out of it)."""
        return f"{self.kind}:{self.target}"


def parse_model_spec(spec: str) -> ModelSpec:
    """Split a `--model` string; raises ModelSpecError on nonsense."""
    spec = spec.strip()
    kind, sep, rest = spec.partition(":")
    if not sep or (kind not in PROVIDERS and kind not in ("scripted", "replay")):
        kind, rest = "openai", spec
    if not rest:
        raise ModelSpecError(f"model spec {spec!r}: nothing after {kind!r}:")
    if kind in ("scripted", "replay"):
        return ModelSpec(kind, rest)
    m = _WITH_URL.match(rest)
    if m:
        return ModelSpec(kind, m["model"], m["url"])
    return ModelSpec(kind, rest, PROVIDERS[kind].default_url)


def resolve_model(
    spec: str,
    *,
    trajectories: Mapping[str, Trajectory] | None = None,
    source: str = "the scenario",
    base_url: str | None = None,
    api_key: str | None = None,
    api_key_env: str | None = None,
    settings: Mapping[str, Any] | None = None,
    prices: PriceTable | None = None,
    retry: RetryPolicy | None = None,
    request_timeout_s: float = 120.0,
    seed: int | None = None,
) -> Model:
    """A fresh model for one trial from a `--model` string (see the module docstring)."""
    parsed = parse_model_spec(spec)
    if parsed.kind == "scripted":
        if trajectories is None:
            raise ModelSpecError(f"{spec}: scripted models need a scenario")
        traj = trajectories.get(parsed.target)
        if traj is None:
            known = ", ".join(sorted(trajectories)) or "none"
            raise ModelSpecError(f"{source} has no trajectory {parsed.target!r} (it has: {known})")
        child = trajectories.get(f"{parsed.target}.child")
        return ScriptedModel(traj, name=parsed.id, child=child)
    if parsed.kind == "replay":
        path = Path(parsed.target)
        if not path.is_file():
            raise ModelSpecError(f"{spec}: no such log file")
        return ReplayModel(path, name=parsed.id)
    provider = PROVIDERS[parsed.kind]
    key = api_key
    if key is None and api_key_env:
        key = os.environ.get(api_key_env)
        if not key:
            raise ModelSpecError(f"{spec}: environment variable {api_key_env} is not set")
    if key is None:
        key = os.environ.get(provider.key_env)
    url = base_url or parsed.base_url
    if key is None and provider.needs_key and url is None:
        raise ModelSpecError(f"{spec}: no API key (set {provider.key_env} or pass --api-key-env)")
    return OpenAICompatModel(
        parsed.target,
        name=parsed.id,
        base_url=url,
        api_key=key,
        settings=settings,
        retry=retry,
        request_timeout_s=request_timeout_s,
        prices=prices,
        seed=seed,
    )


__all__ = ["PROVIDERS", "ModelSpec", "parse_model_spec", "resolve_model"]
