"""Solver training compression models (EnCodec) with reconstruction and adversarial losses."""
import logging
from pathlib import Path
import typing as tp

import flashy
import omegaconf
import torch
from torch import nn

from . import base, builders
from .. import models, quantization
from ..losses import Balancer

logger = logging.getLogger(__name__)


class CompressionSolver(base.StandardSolver):
    """Train an EnCodec-style compression model.

    The generator is trained on the losses named in `cfg.losses`: `adv` and `feat` weight the
    adversarial and feature matching losses of each adversary in `cfg.adversarial.adversaries`; other
    positive weights select reconstruction losses (l1, l2, mel, mrstft, msspec, sisnr) built by
    `builders.get_loss`. All of them are combined by the gradient `Balancer` (`cfg.balancer`).
    Losses of weight 0 are only reported. The quantizer's commitment penalty is backpropagated as is.
    """

    def __init__(self, cfg: omegaconf.DictConfig):
        super().__init__(cfg)
        self.rng: torch.Generator  # reset at each epoch, decides when adversaries train
        self.adv_losses = builders.get_adversarial_losses(self.cfg)
        self.aux_losses = nn.ModuleDict()
        self.info_losses = nn.ModuleDict()
        if cfg.fsdp.use:
            raise ValueError("FSDP is not supported by CompressionSolver; set fsdp.use=false.")
        loss_weights: tp.Dict[str, float] = {}
        for loss_name, weight in self.cfg.losses.items():
            if loss_name in ['adv', 'feat']:
                for adv_name in self.adv_losses:
                    loss_weights[f'{loss_name}_{adv_name}'] = weight
            elif weight > 0:
                self.aux_losses[loss_name] = builders.get_loss(loss_name, self.cfg)
                loss_weights[loss_name] = weight
            else:
                self.info_losses[loss_name] = builders.get_loss(loss_name, self.cfg)
        self.balancer: Balancer = builders.get_balancer(loss_weights, self.cfg.balancer)
        self.register_stateful('adv_losses')

    @property
    def best_metric_name(self) -> tp.Optional[str]:
        # The last state is the one kept: GAN losses do not give a meaningful "best".
        return None

    def build_model(self) -> None:
        """Instantiate the compression model and its optimizer."""
        self.model = models.builders.get_compression_model(self.cfg).to(self.device)
        self.optimizer = builders.get_optimizer(self.model.parameters(), self.cfg.optim)
        self.register_stateful('model', 'optimizer')
        self.register_best_state('model')
        self.register_ema('model')

    def build_dataloaders(self) -> None:
        """Instantiate the audio dataloaders of every stage."""
        self.dataloaders = builders.get_audio_datasets(self.cfg)

    def show(self) -> None:
        """Log the compression model, the adversaries and the losses."""
        self.logger.info(f"Compression model with {self.model.quantizer.total_codebooks} codebooks:")
        self.log_model_summary(self.model)
        self.logger.info("Adversarial loss:")
        self.log_model_summary(self.adv_losses)
        self.logger.info("Auxiliary losses:")
        self.logger.info(self.aux_losses)
        self.logger.info("Info losses:")
        self.logger.info(self.info_losses)

    def run_step(self, idx: int, batch: torch.Tensor, metrics: dict) -> dict:
        """One training or validation step on a batch of audio [B, C, T]."""
        x = batch.to(self.device)
        y = x.clone()

        qres = self.model(x)
        assert isinstance(qres, quantization.QuantizedResult)
        y_pred = qres.x
        metrics['bandwidth'] = qres.bandwidth.mean()

        if self.is_training:
            d_losses: dict = {}
            if len(self.adv_losses) > 0 and \
                    torch.rand(1, generator=self.rng).item() <= 1 / self.cfg.adversarial.every:
                for adv_name, adversary in self.adv_losses.items():
                    d_losses[f'd_{adv_name}'] = adversary.train_adv(y_pred, y)
                metrics['d_loss'] = torch.sum(torch.stack(list(d_losses.values())))
            metrics.update(d_losses)

        balanced_losses: dict = {}
        other_losses: dict = {}

        if qres.penalty is not None and qres.penalty.requires_grad:
            other_losses['penalty'] = qres.penalty  # commitment loss of the quantizer

        for adv_name, adversary in self.adv_losses.items():
            adv_loss, feat_loss = adversary(y_pred, y)
            balanced_losses[f'adv_{adv_name}'] = adv_loss
            balanced_losses[f'feat_{adv_name}'] = feat_loss

        for loss_name, criterion in self.aux_losses.items():
            balanced_losses[loss_name] = criterion(y_pred, y)

        metrics.update(balanced_losses)
        metrics.update(other_losses)
        metrics.update(qres.metrics)

        if self.is_training:
            self.check_finite_losses({**balanced_losses, **other_losses}, idx)
            other_loss = torch.tensor(0., device=self.device)
            if 'penalty' in other_losses:
                other_loss += other_losses['penalty']
            if other_loss.requires_grad:
                other_loss.backward(retain_graph=True)
                ratio1 = sum(p.grad.data.norm(p=2).pow(2)
                             for p in self.model.parameters() if p.grad is not None)
                assert isinstance(ratio1, torch.Tensor)
                metrics['ratio1'] = ratio1.sqrt()

            # Effective training loss, with the balancer's weights at this batch.
            metrics['g_loss'] = self.balancer.backward(balanced_losses, y_pred)
            metrics.update(self.balancer.metrics)
            ratio2 = sum(p.grad.data.norm(p=2).pow(2)
                         for p in self.model.parameters() if p.grad is not None)
            assert isinstance(ratio2, torch.Tensor)
            metrics['ratio2'] = ratio2.sqrt()

            flashy.distrib.sync_model(self.model)
            if self.cfg.optim.max_norm:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.max_norm)
            self.optimizer.step()
            self.optimizer.zero_grad()

        info_losses: dict = {}
        with torch.no_grad():
            for loss_name, criterion in self.info_losses.items():
                info_losses[loss_name] = criterion(y_pred, y)
        metrics.update(info_losses)

        # Totals across adversaries, comparable between adversarial setups.
        adv_values = [loss for name, loss in metrics.items() if name.startswith('adv')]
        if adv_values:
            metrics['adv'] = torch.sum(torch.stack(adv_values))
        feat_values = [loss for name, loss in metrics.items() if name.startswith('feat')]
        if feat_values:
            metrics['feat'] = torch.sum(torch.stack(feat_values))
        # Metrics are only logged: drop their graphs now rather than when the averager reads them.
        return {name: value.detach() if isinstance(value, torch.Tensor) else value
                for name, value in metrics.items()}

    def run_epoch(self):
        # Same adversary schedule for a given epoch on every run and worker.
        self.rng = torch.Generator()
        self.rng.manual_seed(1234 + self.epoch)
        super().run_epoch()

    def evaluate(self) -> dict:
        """Reconstruction metrics (SI-SNR) of the model over the evaluation set."""
        self.model.eval()
        evaluate_stage_name = str(self.current_stage)
        loader = self.dataloaders['evaluate']
        updates = len(loader)
        lp = self.log_progress(f'{evaluate_stage_name} inference', loader, total=updates, updates=self.log_updates)
        average = flashy.averager()
        metrics: dict = {}
        for batch in lp:
            x = batch.to(self.device)
            with torch.no_grad():
                qres = self.model(x)
            y_pred = qres.x.cpu()
            y = batch.cpu()
            metrics = average(evaluate_audio_reconstruction(y_pred, y, self.cfg))
        metrics = flashy.distrib.average_metrics(metrics, len(loader))
        return metrics

    def generate(self) -> None:
        """Save reconstructions of the generation set next to their references."""
        from ..utils.samples.manager import SampleManager

        self.model.eval()
        sample_manager = SampleManager(self.xp, map_reference_to_sample_id=True)
        generate_stage_name = str(self.current_stage)
        loader = self.dataloaders['generate']
        updates = len(loader)
        lp = self.log_progress(generate_stage_name, loader, total=updates, updates=self.log_updates)
        for batch in lp:
            reference, _ = batch
            reference = reference.to(self.device)
            with torch.no_grad():
                qres = self.model(reference)
            assert isinstance(qres, quantization.QuantizedResult)
            sample_manager.add_samples(qres.x.cpu(), self.epoch, ground_truth_wavs=reference.cpu())
        flashy.distrib.barrier()

    def load_from_pretrained(self, name: str) -> dict:
        """State to start training from the pretrained compression model `name`."""
        model = models.CompressionModel.get_pretrained(name)
        if isinstance(model, models.HFEncodecCompressionModel):
            raise RuntimeError(f"{name} is a Hugging Face EnCodec; only AudioCraft compression models "
                               "can be fine-tuned by CompressionSolver.")
        return {'best_state': {'model': model.state_dict()}}

    @staticmethod
    def model_from_checkpoint(checkpoint_path: tp.Union[Path, str],
                              device: tp.Union[torch.device, str] = 'cpu') -> models.CompressionModel:
        """Compression model from a training checkpoint, a `//sig/SIG` XP, or `//pretrained/NAME`.

        Args:
            checkpoint_path: checkpoint file or XP folder, `//sig/SIG` for the XP of that signature,
                or `//pretrained/NAME` for `CompressionModel.get_pretrained(NAME)`
                (`//pretrained/demo`: the codec of the shipped `demo` model).
            device: device to load the model on.
        """
        from ..utils import checkpoint

        if checkpoint_path is None or str(checkpoint_path) in ('', 'None'):
            raise ValueError("No compression model given: set compression_model_checkpoint to //sig/SIG (a "
                             "compression XP), a checkpoint path, or //pretrained/NAME (e.g. "
                             "//pretrained/debug_compression_model or //pretrained/facebook/encodec_32khz).")
        checkpoint_path = str(checkpoint_path)
        if checkpoint_path.startswith('//pretrained/'):
            name = checkpoint_path.split('/', 3)[-1]
            if name == 'demo':
                # The codec shipped in the package: the demo LM recipe trains on it, from any cwd.
                from ..models.loaders import COMPRESSION_FILENAME, demo_model_dir
                name = str(demo_model_dir() / COMPRESSION_FILENAME)
            return models.CompressionModel.get_pretrained(name, device)
        logger.info("Loading compression model from checkpoint: %s", checkpoint_path)
        _checkpoint_path = checkpoint.resolve_checkpoint_path(checkpoint_path, use_fsdp=False)
        if _checkpoint_path is None:
            raise FileNotFoundError(f"Could not resolve compression model checkpoint path: {checkpoint_path}")
        state = checkpoint.load_checkpoint(_checkpoint_path)
        if state is None or 'xp.cfg' not in state:
            raise RuntimeError(f"Could not load compression model from checkpoint: {checkpoint_path}")
        if 'exported' in state:
            raise RuntimeError("This is an exported checkpoint: load it with the //pretrained/ prefix.")
        if not state.get('best_state'):
            raise RuntimeError(f"Checkpoint {checkpoint_path} holds no best_state to load.")
        cfg = state['xp.cfg']
        if isinstance(cfg, str):
            cfg = omegaconf.OmegaConf.create(cfg)
        cfg.device = str(device)
        compression_model = models.builders.get_compression_model(cfg).to(device)
        if compression_model.sample_rate != cfg.sample_rate:
            raise RuntimeError("Compression model sample rate does not match the checkpoint's config.")
        compression_model.load_state_dict(state['best_state']['model'])
        compression_model.eval()
        logger.info("Compression model loaded!")
        return compression_model

    @staticmethod
    def wrapped_model_from_checkpoint(cfg: omegaconf.DictConfig, checkpoint_path: tp.Union[Path, str],
                                      device: tp.Union[torch.device, str] = 'cpu') -> models.CompressionModel:
        """`model_from_checkpoint`, then the LM config's wrapping (`interleave_stereo_codebooks`,
        `compression_model_n_q`) applied by `models.builders.get_wrapped_compression_model`.
        """
        compression_model = CompressionSolver.model_from_checkpoint(checkpoint_path, device)
        return models.builders.get_wrapped_compression_model(compression_model, cfg)


def evaluate_audio_reconstruction(y_pred: torch.Tensor, y: torch.Tensor, cfg: omegaconf.DictConfig) -> dict:
    """Reconstruction metrics of `y_pred` against `y` ([B, C, T]): SI-SNR (negated, lower is better),
    and ViSQOL of `y_pred` against the reference `y` when `evaluate.metrics.visqol` (see docs/METRICS.md).
    """
    metrics = {}
    if cfg.evaluate.metrics.get('visqol', False):
        visqol = builders.get_visqol(cfg.metrics.visqol)
        metrics['visqol'] = visqol(y, y_pred, cfg.sample_rate)
    sisnr = builders.get_loss('sisnr', cfg)
    metrics['sisnr'] = sisnr(y_pred, y)
    return metrics
