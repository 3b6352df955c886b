"""Interface shared by the multi discriminators."""
from abc import ABC
import typing as tp

import torch
from torch import nn

FeatureMapType = tp.List[torch.Tensor]
LogitsType = torch.Tensor
MultiDiscriminatorOutputType = tp.Tuple[tp.List[LogitsType], tp.List[FeatureMapType]]


def apply_conv_stack(x: torch.Tensor, convs: tp.Iterable[nn.Module], activation: nn.Module,
                     conv_post: nn.Module) -> tp.Tuple[torch.Tensor, FeatureMapType]:
    """Run `convs` each followed by `activation`, then `conv_post`; return the logits and the
    activations of every conv of `convs` (the feature maps)."""
    fmap = []
    for conv in convs:
        x = activation(conv(x))
        fmap.append(x)
    return conv_post(x), fmap


class MultiDiscriminator(ABC, nn.Module):
    """A set of discriminators; `forward` returns one logits tensor and one feature map list per member.

    Subclasses hold their members in `self.discriminators`; by default each one sees the same
    input, `_discriminator_inputs` changes that.
    """
    discriminators: nn.ModuleList

    def __init__(self):
        super().__init__()

    def _discriminator_inputs(self, x: torch.Tensor) -> tp.Iterator[torch.Tensor]:
        for _ in range(len(self.discriminators)):
            yield x

    def forward(self, x: torch.Tensor) -> MultiDiscriminatorOutputType:
        logits = []
        fmaps = []
        for disc, disc_input in zip(self.discriminators, self._discriminator_inputs(x)):
            logit, fmap = disc(disc_input)
            logits.append(logit)
            fmaps.append(fmap)
        return logits, fmaps

    @property
    def num_discriminators(self) -> int:
        """Number of discriminators."""
        return len(self.discriminators)
