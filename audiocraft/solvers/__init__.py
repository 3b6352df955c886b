"""Solvers: the training loops of each model family, run by `audiocraft.train` under Dora.

Solver classes load on first access (`audiocraft.solvers.MusicGenSolver`), so that importing
this package does not import every model family.
"""
# flake8: noqa
import importlib
import typing as tp

from .base import StandardSolver
from .builders import DatasetType, get_solver

_LAZY = {
    'CompressionSolver': '.compression',
    'MusicGenSolver': '.musicgen',
    'AudioGenSolver': '.audiogen',
    'MagnetSolver': '.magnet',
    'AudioMagnetSolver': '.magnet',
}


def __getattr__(name: str) -> tp.Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
