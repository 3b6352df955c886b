"""Base Dora explorer for AudioCraft grids: metrics tables shown by `dora grid`."""
from abc import ABC, abstractmethod
import time
import typing as tp

from dora import Explorer
import treetable as tt
from treetable.table import _Node


def get_sheep_ping(sheep: tp.Any) -> tp.Optional[str]:
    """Time since the sheep's log was last written, with a readable unit (None without log)."""
    ping = None
    if sheep.log is not None and sheep.log.exists():
        delta = time.time() - sheep.log.stat().st_mtime
        if delta > 3600 * 24:
            ping = f'{delta / (3600 * 24):.1f}d'
        elif delta > 3600:
            ping = f'{delta / (3600):.1f}h'
        elif delta > 60:
            ping = f'{delta / 60:.1f}m'
        else:
            ping = f'{delta:.1f}s'
    return ping


class BaseExplorer(ABC, Explorer):
    """Base explorer: one table group per stage (train, valid, evaluate...).

    Task explorers define `get_grid_metrics`; extra stages must be handled in `stages`.
    """
    def stages(self) -> tp.List[str]:
        return ["train", "valid", "evaluate"]

    def get_grid_meta(self) -> tp.List[_Node]:
        """Meta information shown for each XP."""
        return [
            tt.leaf("index", align=">"),
            tt.leaf("name", wrap=140),
            tt.leaf("state"),
            tt.leaf("sig", align=">"),
            tt.leaf("sid", align="<"),
        ]

    @abstractmethod
    def get_grid_metrics(self) -> tp.List[_Node]:
        """Metrics shown in the tracking table."""

    def process_sheep(self, sheep: tp.Any, history: tp.List[dict]) -> dict:
        train = {"epoch": len(history)}
        parts = {"train": train}
        for metrics in history:
            for key, sub in metrics.items():
                part = parts.get(key, {})
                if 'duration' in sub:
                    sub = dict(sub, duration=sub['duration'] / 60.)  # minutes are easier to read
                part.update(sub)
                parts[key] = part
        ping = get_sheep_ping(sheep)
        if ping is not None:
            for name in self.stages():
                parts.setdefault(name, {})['ping'] = ping
        return parts
