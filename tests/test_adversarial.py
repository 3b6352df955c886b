"""Adversarial criteria, feature matching, discriminators and the AdversarialLoss wrapper."""
import pytest
import torch

from audiocraft.adversarial import (
    AdversarialLoss,
    FeatureMatchingLoss,
    MultiPeriodDiscriminator,
    MultiScaleDiscriminator,
    MultiScaleSTFTDiscriminator,
    get_adv_criterion,
    get_fake_criterion,
    get_real_criterion,
)
from audiocraft.adversarial import losses as adv_losses


def test_criteria_values():
    x = torch.tensor([2., 0.])
    assert adv_losses.hinge_real_loss(x).item() == pytest.approx(0.5)  # -mean(min(x - 1, 0))
    assert adv_losses.hinge_fake_loss(-x).item() == pytest.approx(0.5)  # -mean(min(-x - 1, 0))
    assert adv_losses.hinge_loss(x).item() == pytest.approx(-1.)
    assert adv_losses.hinge2_loss(x).item() == pytest.approx(0.5)
    assert adv_losses.mse_real_loss(torch.ones(3)).item() == 0.
    assert adv_losses.mse_fake_loss(torch.zeros(3)).item() == 0.
    assert adv_losses.mse_loss(torch.zeros(3)).item() == pytest.approx(1.)
    assert get_adv_criterion('hinge') is adv_losses.hinge_loss
    assert get_adv_criterion('mse') is adv_losses.mse_loss
    assert get_real_criterion('hinge2') is adv_losses.hinge_real_loss
    assert get_fake_criterion('mse') is adv_losses.mse_fake_loss
    for getter in (get_adv_criterion, get_real_criterion, get_fake_criterion):
        with pytest.raises(ValueError, match="Unsupported adversarial loss"):
            getter('wasserstein')


def test_feature_matching():
    a = [torch.ones(2, 3), torch.zeros(4)]
    b = [torch.zeros(2, 3), torch.zeros(4)]
    assert FeatureMatchingLoss()(a, a).item() == 0.
    assert FeatureMatchingLoss(torch.nn.L1Loss(), normalize=True)(a, b).item() == pytest.approx(0.5)
    assert FeatureMatchingLoss(torch.nn.L1Loss(), normalize=False)(a, b).item() == pytest.approx(1.)
    with pytest.raises(ValueError):
        FeatureMatchingLoss()(a, b[:1])


def test_mpd_shapes_and_keys():
    mpd = MultiPeriodDiscriminator(periods=[2, 3], n_layers=3, kernel_size=5, filters=2, filter_scales=2,
                                   stride=3, max_filters=16)
    logits, fmaps = mpd(torch.randn(2, 1, 100))
    assert mpd.num_discriminators == 2
    # Period 3: 100 samples padded to 102 -> 34 rows; strides 3, 3, 1 -> 12, 4, 4.
    assert logits[0].shape == (2, 1, 6, 2)  # 50 rows -> 17 -> 6 -> 6
    assert logits[1].shape == (2, 1, 4, 3)
    assert [f.shape[1] for f in fmaps[1]] == [4, 8, 16, 1]
    keys = set(mpd.state_dict())
    assert {'discriminators.0.convs.0.conv.weight_g', 'discriminators.0.convs.2.conv.weight_v',
            'discriminators.1.conv_post.conv.bias'} <= keys


def test_msd_shapes_and_keys():
    msd = MultiScaleDiscriminator(scale_norms=['spectral_norm', 'weight_norm'], filters=4, max_filters=32,
                                  downsample_scales=[2, 2], groups=[1, 2])
    logits, fmaps = msd(torch.randn(2, 1, 64))
    assert msd.num_discriminators == 2
    assert logits[0].shape == (2, 1, 16)  # two stride-2 layers
    assert logits[1].shape == (2, 1, 9)  # pooled once (65 -> 33 samples) first
    assert len(fmaps[0]) == 5 and fmaps[0][1].shape == (2, 8, 32)
    keys = set(msd.state_dict())
    assert {'discriminators.0.convs.0.1.conv.weight_orig', 'discriminators.1.convs.0.1.conv.weight_g',
            'discriminators.1.conv_post.conv.weight_v'} <= keys
    with pytest.raises(ValueError, match="odd"):
        MultiScaleDiscriminator(kernel_sizes=[4, 3])


def test_msstftd_shapes_and_keys():
    disc = MultiScaleSTFTDiscriminator(filters=4, in_channels=2, n_ffts=[128, 64], hop_lengths=[32, 16],
                                       win_lengths=[128, 64])
    logits, fmaps = disc(torch.randn(3, 2, 1024))
    assert disc.num_discriminators == 2
    # (1024 - 128) / 32 + 1 = 29 frames; 65 bins halved by three stride-2 convs: 33, 17, 9.
    assert logits[0].shape == (3, 1, 29, 9)
    assert logits[1].shape == (3, 1, 61, 5)
    assert [f.shape[1] for f in fmaps[0]] == [4, 4, 4, 4, 4]
    keys = set(disc.state_dict())
    assert {'discriminators.0.spec_transform.window', 'discriminators.0.convs.0.conv.weight',
            'discriminators.0.convs.1.conv.weight_g', 'discriminators.1.conv_post.conv.weight_v'} <= keys
    assert 'discriminators.0.convs.0.conv.weight_g' not in keys  # first conv has no normalization


def _adversarial_loss():
    torch.manual_seed(0)
    adversary = MultiScaleSTFTDiscriminator(filters=2, n_ffts=[64], hop_lengths=[16], win_lengths=[64])
    optimizer = torch.optim.Adam(adversary.parameters(), lr=1e-2)
    return AdversarialLoss(adversary, optimizer, loss=get_adv_criterion('hinge'),
                           loss_real=get_real_criterion('hinge'), loss_fake=get_fake_criterion('hinge'),
                           loss_feat=FeatureMatchingLoss(), normalize=True)


def test_adversarial_loss_train_and_forward():
    adv = _adversarial_loss()
    real = torch.randn(2, 1, 512)
    fake = torch.randn(2, 1, 512, requires_grad=True)
    before = [p.detach().clone() for p in adv.adversary.parameters()]
    d_loss = adv.train_adv(fake, real)
    assert d_loss.item() > 0 and fake.grad is None
    assert any(not torch.equal(b, p) for b, p in zip(before, adv.adversary.parameters()))

    adv.optimizer.zero_grad()
    g_adv, g_feat = adv(fake, real)
    (g_adv + g_feat).backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in adv.adversary.parameters())
    assert all(p.requires_grad for p in adv.adversary.parameters())
    assert adv(real, real)[1].item() == 0.  # identical inputs: no feature mismatch


def test_adversarial_loss_state_dict_carries_optimizer():
    adv = _adversarial_loss()
    adv.train_adv(torch.randn(1, 1, 256), torch.randn(1, 1, 256))
    state = adv.state_dict()
    assert 'optimizer' in state and state['optimizer']['state']
    other = _adversarial_loss()
    other.load_state_dict(state)
    assert other.optimizer.state_dict()['state'].keys() == adv.optimizer.state_dict()['state'].keys()
    for p, q in zip(adv.adversary.parameters(), other.adversary.parameters()):
        assert torch.equal(p, q)


def test_adversarial_loss_rejects_bad_adversary():
    class SingleOutput(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv1d(1, 1, 3)

        def forward(self, x):
            return self.conv(x), [self.conv(x)]  # logits not a list

    bad = SingleOutput()
    adv = AdversarialLoss(bad, torch.optim.SGD(bad.parameters(), lr=1.), adv_losses.hinge_loss,
                          adv_losses.hinge_real_loss, adv_losses.hinge_fake_loss)
    with pytest.raises(RuntimeError, match="list of tensors as logits"):
        adv.train_adv(torch.randn(1, 1, 16), torch.randn(1, 1, 16))
