"""Literal aliases for the string options of the public API."""

from __future__ import annotations

from typing import Literal

Mode = Literal["binary", "multiclass", "multilabel"]
Reduction = Literal["mean", "sum", "none"]
Average = Literal["micro", "macro", "none"]

MODES: tuple[str, ...] = ("binary", "multiclass", "multilabel")
REDUCTIONS: tuple[str, ...] = ("mean", "sum", "none")
AVERAGES: tuple[str, ...] = ("micro", "macro", "none")
