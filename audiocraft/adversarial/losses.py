"""Adversarial losses: the AdversarialLoss wrapper (discriminator + its optimizer) and criteria."""
import typing as tp

import flashy
import torch
from torch import nn
from torch.nn import functional as F
from ..utils.errors import InvalidArgumentError

ADVERSARIAL_LOSSES = ['mse', 'hinge', 'hinge2']

AdvLossType = tp.Union[nn.Module, tp.Callable[[torch.Tensor], torch.Tensor]]
FeatLossType = tp.Union[nn.Module, tp.Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]


class AdversarialLoss(nn.Module):
    """Adversary (a multi discriminator) trained with its own optimizer, and the generator losses it gives.

    `train_adv(fake, real)` makes one optimizer step of the adversary; `forward(fake, real)` returns the
    generator's adversarial loss and feature matching loss, without gradients into the adversary.
    The adversary's optimizer state is saved inside this module's state dict under `optimizer`.

    Args:
        adversary: module returning `(logits, feature_maps)` lists, one entry per sub-discriminator.
        optimizer: optimizer of the adversary's parameters.
        loss: generator criterion on fake logits.
        loss_real: adversary criterion on real logits.
        loss_fake: adversary criterion on fake logits.
        loss_feat: feature matching criterion, or None to skip it.
        normalize: divide the losses by the number of sub-discriminators.
    """

    def __init__(self, adversary: nn.Module, optimizer: torch.optim.Optimizer, loss: AdvLossType,
                 loss_real: AdvLossType, loss_fake: AdvLossType, loss_feat: tp.Optional[FeatLossType] = None,
                 normalize: bool = True):
        super().__init__()
        self.adversary: nn.Module = adversary
        flashy.distrib.broadcast_model(self.adversary)
        self.optimizer = optimizer
        self.loss = loss
        self.loss_real = loss_real
        self.loss_fake = loss_fake
        self.loss_feat = loss_feat
        self.normalize = normalize

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        # The adversary's optimizer travels with the module so that checkpoints resume GAN training.
        super()._save_to_state_dict(destination, prefix, keep_vars)
        destination[prefix + 'optimizer'] = self.optimizer.state_dict()
        return destination

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        self.optimizer.load_state_dict(state_dict.pop(prefix + 'optimizer'))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def get_adversary_pred(self, x: torch.Tensor) -> tp.Tuple[tp.List[torch.Tensor], tp.List[tp.List[torch.Tensor]]]:
        """Run the adversary, checking that it returns lists of logits and lists of feature maps."""
        logits, fmaps = self.adversary(x)
        if not (isinstance(logits, list) and all(isinstance(t, torch.Tensor) for t in logits)):
            raise RuntimeError(f'Expecting a list of tensors as logits but {type(logits)} found.')
        if not isinstance(fmaps, list):
            raise RuntimeError(f'Expecting a list of features maps but {type(fmaps)} found.')
        for fmap in fmaps:
            if not (isinstance(fmap, list) and all(isinstance(f, torch.Tensor) for f in fmap)):
                raise RuntimeError(f'Expecting a list of tensors as feature maps but {type(fmap)} found.')
        return logits, fmaps

    def train_adv(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """One optimization step of the adversary on detached `fake` and `real`; returns its loss."""
        loss = torch.tensor(0., device=fake.device)
        all_logits_fake_is_fake, _ = self.get_adversary_pred(fake.detach())
        all_logits_real_is_fake, _ = self.get_adversary_pred(real.detach())
        n_sub_adversaries = len(all_logits_fake_is_fake)
        for logit_fake_is_fake, logit_real_is_fake in zip(all_logits_fake_is_fake, all_logits_real_is_fake):
            loss += self.loss_fake(logit_fake_is_fake) + self.loss_real(logit_real_is_fake)

        if self.normalize:
            loss /= n_sub_adversaries

        self.optimizer.zero_grad()
        with flashy.distrib.eager_sync_model(self.adversary):
            loss.backward()
        self.optimizer.step()
        return loss

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> tp.Tuple[torch.Tensor, torch.Tensor]:
        """Generator losses `(adv, feat)`: gradients flow into `fake` only, never into the adversary."""
        adv = torch.tensor(0., device=fake.device)
        feat = torch.tensor(0., device=fake.device)
        with flashy.utils.readonly(self.adversary):
            all_logits_fake_is_fake, all_fmap_fake = self.get_adversary_pred(fake)
            all_logits_real_is_fake, all_fmap_real = self.get_adversary_pred(real)
            n_sub_adversaries = len(all_logits_fake_is_fake)
            for logit_fake_is_fake in all_logits_fake_is_fake:
                adv += self.loss(logit_fake_is_fake)
            if self.loss_feat:
                for fmap_fake, fmap_real in zip(all_fmap_fake, all_fmap_real):
                    feat += self.loss_feat(fmap_fake, fmap_real)

        if self.normalize:
            adv /= n_sub_adversaries
            feat /= n_sub_adversaries
        return adv, feat


def _check_loss_type(loss_type: str) -> None:
    if loss_type not in ADVERSARIAL_LOSSES:
        raise InvalidArgumentError(f"Unsupported adversarial loss '{loss_type}'; use one of {ADVERSARIAL_LOSSES}.")


def get_adv_criterion(loss_type: str) -> tp.Callable:
    """Generator criterion on the adversary's logits for fake samples."""
    _check_loss_type(loss_type)
    return {'mse': mse_loss, 'hinge': hinge_loss, 'hinge2': hinge2_loss}[loss_type]


def get_fake_criterion(loss_type: str) -> tp.Callable:
    """Adversary criterion on its logits for fake samples."""
    _check_loss_type(loss_type)
    return mse_fake_loss if loss_type == 'mse' else hinge_fake_loss


def get_real_criterion(loss_type: str) -> tp.Callable:
    """Adversary criterion on its logits for real samples."""
    _check_loss_type(loss_type)
    return mse_real_loss if loss_type == 'mse' else hinge_real_loss


def mse_real_loss(x: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(x, torch.tensor(1., device=x.device).expand_as(x))


def mse_fake_loss(x: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(x, torch.tensor(0., device=x.device).expand_as(x))


def hinge_real_loss(x: torch.Tensor) -> torch.Tensor:
    return -torch.mean(torch.min(x - 1, torch.tensor(0., device=x.device).expand_as(x)))


def hinge_fake_loss(x: torch.Tensor) -> torch.Tensor:
    return -torch.mean(torch.min(-x - 1, torch.tensor(0., device=x.device).expand_as(x)))


def mse_loss(x: torch.Tensor) -> torch.Tensor:
    if x.numel() == 0:
        return torch.tensor([0.0], device=x.device)
    return F.mse_loss(x, torch.tensor(1., device=x.device).expand_as(x))


def hinge_loss(x: torch.Tensor) -> torch.Tensor:
    if x.numel() == 0:
        return torch.tensor([0.0], device=x.device)
    return -x.mean()


def hinge2_loss(x: torch.Tensor) -> torch.Tensor:
    if x.numel() == 0:
        return torch.tensor([0.0], device=x.device)
    return -torch.mean(torch.min(x - 1, torch.tensor(0., device=x.device).expand_as(x)))


class FeatureMatchingLoss(nn.Module):
    """Distance between the adversary's feature maps on fake and real samples, summed over layers.

    Args:
        loss: distance between two feature maps.
        normalize: average rather than sum over layers.
    """

    def __init__(self, loss: nn.Module = torch.nn.L1Loss(), normalize: bool = True):
        super().__init__()
        self.loss = loss
        self.normalize = normalize

    def forward(self, fmap_fake: tp.List[torch.Tensor], fmap_real: tp.List[torch.Tensor]) -> torch.Tensor:
        if len(fmap_fake) != len(fmap_real) or len(fmap_fake) == 0:
            raise InvalidArgumentError("FeatureMatchingLoss needs two non-empty lists of feature maps of equal length.")
        feat_loss = torch.tensor(0., device=fmap_fake[0].device)
        n_fmaps = 0
        for feat_fake, feat_real in zip(fmap_fake, fmap_real):
            if feat_fake.shape != feat_real.shape:
                raise InvalidArgumentError(f"Feature maps differ in shape: {feat_fake.shape} vs {feat_real.shape}.")
            n_fmaps += 1
            feat_loss += self.loss(feat_fake, feat_real)
        if self.normalize:
            feat_loss /= n_fmaps
        return feat_loss
