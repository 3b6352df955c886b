"""Explorers for language model grids (MusicGen, AudioGen, MAGNeT)."""
import typing as tp

import treetable as tt
from treetable.table import _Node

from .._base_explorers import BaseExplorer


class LMExplorer(BaseExplorer):
    """Training progress of LMs: cross-entropy, perplexity and best validation perplexity."""
    eval_metrics: tp.List[str] = []

    def stages(self) -> tp.List[str]:
        return ['train', 'valid']

    def get_grid_metrics(self) -> tp.List[_Node]:
        return [
            tt.group('train', [
                tt.leaf('epoch'),
                tt.leaf('duration', '.1f'),  # duration in minutes
                tt.leaf('ping'),
                tt.leaf('ce', '.4f'),
                tt.leaf('ppl', '.3f'),
            ], align='>'),
            tt.group('valid', [
                tt.leaf('ce', '.4f'),
                tt.leaf('ppl', '.3f'),
                tt.leaf('best_ppl', '.3f'),
            ], align='>'),
        ]

    def process_sheep(self, sheep: tp.Any, history: tp.List[dict]) -> dict:
        parts = super().process_sheep(sheep, history)
        track_by = {'ppl': 'lower'}  # 'lower' or 'higher' is better
        best_metrics = {k: (1 if v == 'lower' else -1) * float('inf') for k, v in track_by.items()}

        def better(mode: str, a: float, b: float) -> bool:
            return a < b if mode == 'lower' else a > b

        for metrics in history:
            sub = metrics.get('valid', {})
            for metric, mode in track_by.items():
                if metric in sub and better(mode, sub[metric], best_metrics[metric]):
                    best_metrics[metric] = sub[metric]
        if 'valid' in parts:
            parts['valid'].update({f'best_{k}': v for k, v in best_metrics.items()})
        return parts


class GenerationEvalExplorer(BaseExplorer):
    """Objective evaluation of generations (FAD, KLD, text consistency, chroma cosine)."""
    eval_metrics: tp.List[str] = []

    def stages(self) -> tp.List[str]:
        return ['evaluate']

    def get_grid_metrics(self) -> tp.List[_Node]:
        return [
            tt.group('evaluate', [
                tt.leaf('epoch', '.3f'),
                tt.leaf('duration', '.1f'),
                tt.leaf('ping'),
                tt.leaf('ce', '.4f'),
                tt.leaf('ppl', '.3f'),
                tt.leaf('fad', '.3f'),
                tt.leaf('kld', '.4f'),
                tt.leaf('text_consistency', '.4f'),
                tt.leaf('chroma_cosine', '.4f'),
            ], align='>'),
        ]
