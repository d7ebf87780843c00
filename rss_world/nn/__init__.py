"""The Recursive Sparse Reasoning core. Imports torch only."""

from .lora import StackedLoRA, grouped_update
from .recursive import BaseCache, RecursiveSparseAttention, RSRConfig, RSROutput
from .routing import GatingNetwork, RoutingRecord, Selection, SingleExpert, balance_loss, gumbel_select

__all__ = [
    "BaseCache",
    "GatingNetwork",
    "RSRConfig",
    "RSROutput",
    "RecursiveSparseAttention",
    "RoutingRecord",
    "Selection",
    "SingleExpert",
    "StackedLoRA",
    "balance_loss",
    "grouped_update",
    "gumbel_select",
]
