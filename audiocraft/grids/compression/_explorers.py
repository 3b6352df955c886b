"""Explorer for compression model (EnCodec) grids."""
import typing as tp

import treetable as tt
from treetable.table import _Node

from .._base_explorers import BaseExplorer


class CompressionExplorer(BaseExplorer):
    """Training progress of compression models: bandwidth, adversarial and reconstruction losses."""
    eval_metrics = ["sisnr", "visqol"]

    def get_grid_meta(self) -> tp.List[_Node]:
        # The base columns without the short id `sid`.
        return [leaf for leaf in super().get_grid_meta() if leaf.key != 'sid']

    def get_grid_metrics(self) -> tp.List[_Node]:
        return [
            tt.group("train", [
                tt.leaf("epoch"),
                tt.leaf("bandwidth", ".2f"),
                tt.leaf("adv", ".4f"),
                tt.leaf("d_loss", ".4f"),
            ], align=">"),
            tt.group("valid", [
                tt.leaf("bandwidth", ".2f"),
                tt.leaf("adv", ".4f"),
                tt.leaf("msspec", ".4f"),
                tt.leaf("sisnr", ".2f"),
            ], align=">"),
            tt.group("evaluate", [
                tt.leaf(name, ".3f") for name in self.eval_metrics
            ], align=">"),
        ]
