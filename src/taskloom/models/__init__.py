"""Models: the `Model` interface, test doubles, and `infer_model("provider:name")`.

Provider adapters are imported only when used, so their SDKs stay optional extras.
"""

from __future__ import annotations

import importlib
import os

from ..errors import UserError
from ._base import AssistantMessage as AssistantMessage
from ._base import FinishReason as FinishReason
from ._base import Message as Message
from ._base import Model as Model
from ._base import ModelRequest as ModelRequest
from ._base import ModelResponse as ModelResponse
from ._base import ModelSettings as ModelSettings
from ._base import OutputSpec as OutputSpec
from ._base import RequestUsage as RequestUsage
from ._base import SystemMessage as SystemMessage
from ._base import ToolCall as ToolCall
from ._base import ToolDefinition as ToolDefinition
from ._base import ToolResultMessage as ToolResultMessage
from ._base import UserMessage as UserMessage
from .scripted import FunctionModel as FunctionModel
from .scripted import ScriptedModel as ScriptedModel

__all__ = (
    "AssistantMessage",
    "FinishReason",
    "FunctionModel",
    "Message",
    "Model",
    "ModelRequest",
    "ModelResponse",
    "ModelSettings",
    "OutputSpec",
    "RequestUsage",
    "ScriptedModel",
    "SystemMessage",
    "ToolCall",
    "ToolDefinition",
    "ToolResultMessage",
    "UserMessage",
    "default_model",
    "infer_model",
)

# provider -> (module, class); each class takes the model name as its only positional argument
_PROVIDERS: dict[str, tuple[str, str]] = {
    "openai": ("taskloom.models.openai", "OpenAIModel"),
    "anthropic": ("taskloom.models.anthropic", "AnthropicModel"),
    "local": ("taskloom.models.local", "LocalModel"),
}


def infer_model(model: Model | str) -> Model:
    """A model from `provider:name`, or the model itself.

    Examples: `openai:gpt-4o-mini`, `anthropic:claude-sonnet-4-5`, `local:smollm2`.

    Raises:
        UserError: an unknown provider, or a name without one.
    """
    if isinstance(model, Model):
        return model
    provider, sep, name = model.partition(":")
    if not sep or not name or provider not in _PROVIDERS:
        raise UserError(
            f"cannot tell the model from {model!r}: write provider:name, with provider one of"
            f" {', '.join(sorted(_PROVIDERS))} (for example openai:gpt-4o-mini or local:smollm2)"
        )
    module_name, class_name = _PROVIDERS[provider]
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(name)


def default_model() -> str:
    """The model to use when none is named.

    `TASKLOOM_MODEL` when set; else an OpenAI-compatible endpoint when one is configured
    (`OPENAI_API_KEY` or `OPENAI_BASE_URL`); else the offline `local:smollm2`.
    """
    chosen = os.environ.get("TASKLOOM_MODEL")
    if chosen:
        return chosen
    if os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL"):
        return "openai:gpt-4o-mini"
    return "local:smollm2"
