"""CompressionSolver: a real (tiny) GAN training epoch, checkpoints, and loading codecs for LM solvers."""
from pathlib import Path

import dora
import omegaconf
import pytest
import torch
from hydra import compose, initialize_config_dir

from audiocraft.models import CompressionModel
from audiocraft.solvers.compression import CompressionSolver, evaluate_audio_reconstruction

CONFIG_DIR = Path(__file__).parent.parent / "config"
ENCODEC_CASE = Path(__file__).parent / "reference" / "cases" / "encodec_32khz_mono"

OVERRIDES = [
    'solver=compression/debug', 'device=cpu', 'seanet.ratios=[4,4]', 'seanet.lstm=0', 'rvq.n_q=2', 'rvq.bins=16',
    'adversarial.adversaries=[msstftd]', 'losses.adv=1', 'losses.feat=1', 'losses.msspec=1',
    'msstftd.filters=2', 'msstftd.n_ffts=[128,64]', 'msstftd.hop_lengths=[32,16]', 'msstftd.win_lengths=[128,64]',
    'msspec.range_start=6', 'msspec.range_end=8', 'msspec.n_mels=16',
    'mel.n_mels=16', 'mel.n_fft=256', 'mel.win_length=256', 'mel.hop_length=64', 'sisnr.segment=null',
    'balancer.balance_grads=true', 'balancer.per_batch_item=true', 'balancer.ema_decay=0.999',
    'optim.epochs=1', 'optim.updates_per_epoch=2', 'logging.log_updates=0',
]


class InMemoryCompressionSolver(CompressionSolver):
    """Same solver, fed from a few random tensors instead of an audio manifest."""

    def build_dataloaders(self):
        g = torch.Generator().manual_seed(0)
        data = [0.1 * torch.randn(2, 1, 1600, generator=g) for _ in range(2)]
        self.dataloaders = {'train': data, 'valid': data[:1], 'evaluate': data[:1],
                            'generate': [(data[0], [None, None])]}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.manual_seed(0)
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base='1.1'):
        cfg = compose('config', overrides=OVERRIDES)
    root = tmp_path_factory.mktemp("dora")
    xp = dora.XP(dora=dora.conf.DoraConfig(dir=root, exclude=[]), cfg=cfg, argv=[], sig='compress0')
    with xp.enter():
        solver = InMemoryCompressionSolver(cfg)
        before = {k: v.clone() for k, v in solver.model.state_dict().items()}
        solver.run_epoch()
        metrics = dict(solver._pending_metrics)
        solver.commit()
    return solver, before, metrics, xp


def test_losses_split_between_balancer_and_info(trained):
    solver, _, _, _ = trained
    assert set(solver.aux_losses) == {'l1', 'msspec'}
    assert set(solver.info_losses) == {'mel', 'sisnr'}
    assert solver.balancer.weights == {'adv_msstftd': 1, 'feat_msstftd': 1, 'l1': 1.0, 'msspec': 1}


def test_one_epoch_trains_generator_and_adversary(trained):
    solver, before, metrics, _ = trained
    train = metrics['train']
    for key in ['bandwidth', 'd_msstftd', 'd_loss', 'adv_msstftd', 'feat_msstftd', 'l1', 'msspec',
                'penalty', 'g_loss', 'ratio1', 'ratio2', 'mel', 'sisnr', 'adv', 'feat']:
        assert key in train, key
    assert {'l1', 'msspec', 'mel', 'sisnr'} <= set(metrics['valid']) and 'g_loss' not in metrics['valid']
    assert set(metrics['evaluate']) >= {'sisnr'}
    after = solver.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if before[k].is_floating_point())


def test_checkpoint_round_trip(trained):
    solver, _, _, xp = trained
    state = torch.load(xp.folder / 'checkpoint.th', weights_only=False)
    assert 'msstftd.optimizer' in state['adv_losses']  # the adversary's optimizer is checkpointed
    model = CompressionSolver.model_from_checkpoint(xp.folder)
    x = 0.1 * torch.randn(1, 1, 1600)
    solver.model.eval()
    with solver.swap_best_state():
        expected = solver.model.encode(x)[0]
    torch.testing.assert_close(model.encode(x)[0], expected, rtol=0, atol=0)


def test_pretrained_and_wrapped_loading():
    reference = CompressionModel.get_pretrained(str(ENCODEC_CASE))
    model = CompressionSolver.model_from_checkpoint(f'//pretrained/{ENCODEC_CASE}')
    x = 0.1 * torch.randn(1, 1, 3200)
    assert torch.equal(model.encode(x)[0], reference.encode(x)[0])
    lm_cfg = omegaconf.OmegaConf.create({'compression_model_n_q': 2})
    wrapped = CompressionSolver.wrapped_model_from_checkpoint(lm_cfg, f'//pretrained/{ENCODEC_CASE}')
    assert wrapped.num_codebooks == 2 and wrapped.encode(x)[0].shape[1] == 2


def test_bad_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError, match="Could not resolve"):
        CompressionSolver.model_from_checkpoint(tmp_path / 'missing.th')
    with pytest.raises(RuntimeError, match="//pretrained/"):
        CompressionSolver.model_from_checkpoint(ENCODEC_CASE / 'compression_state_dict.bin')
    # audiogen/debug names no codec, as AudioCraft's: the error says what to set.
    with pytest.raises(ValueError, match="compression_model_checkpoint"):
        CompressionSolver.model_from_checkpoint(None)  # type: ignore


def test_evaluate_reconstruction_metrics(trained):
    solver, _, _, _ = trained
    cfg = solver.cfg.copy()
    y = 0.1 * torch.randn(1, 1, 800)
    metrics = evaluate_audio_reconstruction(y + 0.01 * torch.randn_like(y), y, cfg)
    assert set(metrics) == {'sisnr'} and metrics['sisnr'].item() < -10  # about 20 dB SNR
    cfg.evaluate.metrics.visqol = True
    t = torch.arange(cfg.sample_rate) / cfg.sample_rate
    tone = (0.3 * torch.sin(2 * torch.pi * 440 * t))[None, None]
    try:
        import visqol  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="visqol-python"):
            evaluate_audio_reconstruction(tone, tone, cfg)
    else:
        metrics = evaluate_audio_reconstruction(tone + 0.01 * torch.randn_like(tone), tone, cfg)
        assert 1.0 <= metrics['visqol'] <= 5.0
