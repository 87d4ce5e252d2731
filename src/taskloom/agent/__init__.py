"""Agents: the loop that performs tasks with a model and tools."""

from ._agent import Agent as Agent
from ._agent import AgentHost as AgentHost
from ._agent import register_default_host as register_default_host
from ._decorator import TaskFunction as TaskFunction
from ._guardrails import Block as Block
from ._guardrails import Retry as Retry
from ._journal import OutcomeAnswer as OutcomeAnswer
from ._limits import Limits as Limits
from ._loop import Approval as Approval
from ._loop import ToolCallCheck as ToolCallCheck

__all__ = (
    "Agent",
    "AgentHost",
    "Approval",
    "Block",
    "Limits",
    "OutcomeAnswer",
    "Retry",
    "TaskFunction",
    "ToolCallCheck",
    "register_default_host",
)
