from __future__ import annotations

from taskloom.models import AssistantMessage, Message


def content(message: Message) -> str:
    """The text of a message, whatever its role."""
    return message.text if isinstance(message, AssistantMessage) else message.content
