"""The Recursive Sparse Reasoning core. Imports torch only."""

from .lora import StackedLoRA
from .recursive import BaseCache, RecursiveSparseAttention, RSRConfig, RSROutput
from .routing import GatingNetwork, RoutingRecord, Selection, balance_loss, gumbel_select

__all__ = [
    "BaseCache",
    "GatingNetwork",
    "RSRConfig",
    "RSROutput",
    "RecursiveSparseAttention",
    "RoutingRecord",
    "Selection",
    "StackedLoRA",
    "balance_loss",
    "gumbel_select",
]
