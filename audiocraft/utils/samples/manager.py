"""Storage of generated samples (with prompts, references and conditioning) in an XP folder.

Layout under `<xp folder>/<cfg.generate.path>`:
- `<epoch>/<sample id>.<ext>` and `<epoch>/<sample id>.json` (the `Sample` record),
- `<epoch>/prompt/<prompt id>.<ext>` for audio prompts,
- `reference/<reference id>.<ext>` for ground truth audio, shared across epochs.

Sample ids hash the conditioning and prompt, so the same inputs map to the same id across
epochs and XPs, which makes side by side comparisons easy (`get_samples_for_xps`).
"""
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
import hashlib
import json
import logging
from pathlib import Path
import re
import typing as tp
import unicodedata

import dora
import torch

from ...data.audio import audio_read, audio_write

logger = logging.getLogger(__name__)


@dataclass
class ReferenceSample:
    id: str
    path: str
    duration: float


@dataclass
class Sample:
    id: str
    path: str
    epoch: int
    duration: float
    conditioning: tp.Optional[tp.Dict[str, tp.Any]]
    prompt: tp.Optional[ReferenceSample]
    reference: tp.Optional[ReferenceSample]
    generation_args: tp.Optional[tp.Dict[str, tp.Any]]

    def __hash__(self) -> int:
        return hash(self.id)

    def audio(self) -> tp.Tuple[torch.Tensor, int]:
        return audio_read(self.path)

    def audio_prompt(self) -> tp.Optional[tp.Tuple[torch.Tensor, int]]:
        return audio_read(self.prompt.path) if self.prompt is not None else None

    def audio_reference(self) -> tp.Optional[tp.Tuple[torch.Tensor, int]]:
        return audio_read(self.reference.path) if self.reference is not None else None


class SampleManager:
    """Writes and indexes the generated samples of one XP.

    Args:
        xp: the Dora XP (its cfg gives `generate.path`, `generate.audio` and `sample_rate`).
        map_reference_to_sample_id: name prompts / references after their sample id instead of
            a hash of their content.
    """
    def __init__(self, xp: dora.XP, map_reference_to_sample_id: bool = False):
        self.xp = xp
        self.base_folder: Path = xp.folder / xp.cfg.generate.path
        self.reference_folder = self.base_folder / 'reference'
        self.map_reference_to_sample_id = map_reference_to_sample_id
        self.samples: tp.List[Sample] = []
        # items added per epoch by this manager: unconditioned samples are named by this index,
        # so that successive batches do not overwrite each other.
        self._added_per_epoch: tp.Dict[int, int] = {}
        self._load_samples()

    @property
    def latest_epoch(self) -> int:
        """Latest epoch across all samples (0 if none)."""
        return max(self.samples, key=lambda x: x.epoch).epoch if self.samples else 0

    def _load_samples(self) -> None:
        """Read the existing sample records of this XP."""
        self.base_folder.mkdir(parents=True, exist_ok=True)
        epoch_folders = [p for p in self.base_folder.iterdir() if p.is_dir() and p.name.isdigit()]
        json_files = [f for folder in epoch_folders for f in folder.glob('*.json')]
        with ThreadPoolExecutor(6) as pool:
            self.samples = list(pool.map(self._load_sample, json_files))

    @staticmethod
    def _load_sample(json_file: Path) -> Sample:
        with open(json_file, 'r') as f:
            data: tp.Dict[str, tp.Any] = json.load(f)
        prompt_data = data.get('prompt')
        prompt = ReferenceSample(prompt_data['id'], prompt_data['path'], prompt_data['duration']) \
            if prompt_data else None
        reference_data = data.get('reference')
        reference = ReferenceSample(reference_data['id'], reference_data['path'], reference_data['duration']) \
            if reference_data else None
        return Sample(id=data['id'], path=data['path'], epoch=data['epoch'], duration=data['duration'],
                      prompt=prompt, conditioning=data.get('conditioning'), reference=reference,
                      generation_args=data.get('generation_args'))

    def _init_hash(self) -> tp.Any:
        return hashlib.sha1()

    def _get_tensor_id(self, tensor: torch.Tensor) -> str:
        hash_id = self._init_hash()
        hash_id.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
        return hash_id.hexdigest()

    def _get_sample_id(self, index: int, prompt_wav: tp.Optional[torch.Tensor],
                       conditions: tp.Optional[tp.Dict[str, str]]) -> str:
        """Sample id: a hash of the prompt and conditions, plus a human readable suffix."""
        if prompt_wav is None and not conditions:
            return f"noinput_{index}"
        hr_label = ""
        hash_id = self._init_hash()
        if prompt_wav is not None:
            hash_id.update(prompt_wav.detach().float().cpu().contiguous().numpy().tobytes())
            hr_label += "_prompted"
        else:
            hr_label += "_unprompted"
        if conditions:
            encoded_json = json.dumps(conditions, sort_keys=True, default=str).encode()
            hash_id.update(encoded_json)
            cond_str = "-".join([f"{key}={slugify(value)}" for key, value in sorted(conditions.items())])
            cond_str = cond_str[:100]  # raw texts can be too long for a file name
            cond_str = cond_str if len(cond_str) > 0 else "unconditioned"
            hr_label += f"_{cond_str}"
        else:
            hr_label += "_unconditioned"
        return hash_id.hexdigest() + hr_label

    def _store_audio(self, wav: torch.Tensor, stem_path: Path, overwrite: bool = False) -> Path:
        """Write `wav` at `stem_path` with the generate.audio settings; reuse an existing file
        with the same stem unless `overwrite`."""
        existing_paths = [path for path in stem_path.parent.glob(stem_path.stem + '.*')
                          if path.suffix != '.json']
        if existing_paths and not overwrite:
            return existing_paths[0]
        if existing_paths:
            logger.warning("Overwriting existing audio file with stem path %s", stem_path)
        audio_kwargs = dict(self.xp.cfg.generate.audio)
        if audio_kwargs.get('sample_rate') is None:
            audio_kwargs['sample_rate'] = self.xp.cfg.sample_rate
        return audio_write(stem_path, wav.detach().cpu(), **audio_kwargs)

    def add_sample(self, sample_wav: torch.Tensor, epoch: int, index: int = 0,
                   conditions: tp.Optional[tp.Dict[str, str]] = None, prompt_wav: tp.Optional[torch.Tensor] = None,
                   ground_truth_wav: tp.Optional[torch.Tensor] = None,
                   generation_args: tp.Optional[tp.Dict[str, tp.Any]] = None) -> Sample:
        """Store one generated sample [C, T] with its optional prompt, ground truth and metadata."""
        sample_id = self._get_sample_id(index, prompt_wav, conditions)
        reuse_id = self.map_reference_to_sample_id
        prompt, ground_truth = None, None
        sample_rate = self.xp.cfg.sample_rate
        if prompt_wav is not None:
            prompt_id = sample_id if reuse_id else self._get_tensor_id(prompt_wav.sum(0, keepdim=True))
            prompt_duration = prompt_wav.shape[-1] / sample_rate
            prompt_path = self._store_audio(prompt_wav, self.base_folder / str(epoch) / 'prompt' / prompt_id)
            prompt = ReferenceSample(prompt_id, str(prompt_path), prompt_duration)
        if ground_truth_wav is not None:
            ground_truth_id = sample_id if reuse_id else self._get_tensor_id(ground_truth_wav.sum(0, keepdim=True))
            ground_truth_duration = ground_truth_wav.shape[-1] / sample_rate
            ground_truth_path = self._store_audio(ground_truth_wav, self.reference_folder / ground_truth_id)
            ground_truth = ReferenceSample(ground_truth_id, str(ground_truth_path), ground_truth_duration)
        sample_path = self._store_audio(sample_wav, self.base_folder / str(epoch) / sample_id, overwrite=True)
        duration = sample_wav.shape[-1] / sample_rate
        sample = Sample(sample_id, str(sample_path), epoch, duration, conditions, prompt, ground_truth,
                        generation_args)
        self.samples.append(sample)
        with open(sample_path.with_suffix('.json'), 'w') as f:
            json.dump(asdict(sample), f, indent=2, default=str)
        return sample

    def add_samples(self, samples_wavs: torch.Tensor, epoch: int,
                    conditioning: tp.Optional[tp.List[tp.Dict[str, tp.Any]]] = None,
                    prompt_wavs: tp.Optional[torch.Tensor] = None,
                    ground_truth_wavs: tp.Optional[torch.Tensor] = None,
                    generation_args: tp.Optional[tp.Dict[str, tp.Any]] = None) -> tp.List[Sample]:
        """Store a batch of samples [B, C, T]; per-item conditioning, prompts and ground truths."""
        samples = []
        offset = self._added_per_epoch.get(epoch, 0)
        self._added_per_epoch[epoch] = offset + len(samples_wavs)
        for idx, wav in enumerate(samples_wavs):
            samples.append(self.add_sample(
                wav, epoch, offset + idx,
                conditioning[idx] if conditioning else None,
                prompt_wavs[idx] if prompt_wavs is not None else None,
                ground_truth_wavs[idx] if ground_truth_wavs is not None else None,
                generation_args))
        return samples

    def get_samples(self, epoch: int = -1, max_epoch: int = -1, exclude_prompted: bool = False,
                    exclude_unprompted: bool = False, exclude_conditioned: bool = False,
                    exclude_unconditioned: bool = False) -> tp.Set[Sample]:
        """Samples of one epoch (`epoch`, else the latest one not after `max_epoch`, else the latest)."""
        if max_epoch >= 0:
            eligible = [sample.epoch for sample in self.samples if sample.epoch <= max_epoch]
            if not eligible:
                return set()
            samples_epoch = max(eligible)
        else:
            samples_epoch = self.latest_epoch if epoch < 0 else epoch
        return {
            sample for sample in self.samples
            if (sample.epoch == samples_epoch
                and (not exclude_prompted or sample.prompt is None)
                and (not exclude_unprompted or sample.prompt is not None)
                and (not exclude_conditioned or not sample.conditioning)
                and (not exclude_unconditioned or sample.conditioning))
        }


def slugify(value: tp.Any, allow_unicode: bool = False) -> str:
    """File-name friendly version of `value`: alphanumerics, underscores and hyphens only."""
    value = str(value)
    if allow_unicode:
        value = unicodedata.normalize("NFKC", value)
    else:
        value = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode("ascii")
    value = re.sub(r"[^\w\s-]", "", value.lower())
    return re.sub(r"[-\s]+", "-", value).strip("-_")


def _match_stable_samples(samples_per_xp: tp.List[tp.Set[Sample]]) -> tp.Dict[str, tp.List[Sample]]:
    # Samples whose id is stable across XPs (conditioned or prompted), matched by id.
    stable_samples_per_xp = [{
        sample.id: sample for sample in samples
        if sample.prompt is not None or sample.conditioning
    } for samples in samples_per_xp]
    stable_ids = set.intersection(*[set(samples.keys()) for samples in stable_samples_per_xp])
    return {sample_id: [xp_samples[sample_id] for xp_samples in stable_samples_per_xp]
            for sample_id in stable_ids}


def _match_unstable_samples(samples_per_xp: tp.List[tp.Set[Sample]]) -> tp.Dict[str, tp.List[Sample]]:
    # Unconditioned, unprompted samples cannot be matched: pair them arbitrarily.
    unstable_samples_per_xp = [[sample for sample in sorted(samples, key=lambda x: x.id)
                                if sample.prompt is None and not sample.conditioning]
                               for samples in samples_per_xp]
    min_len = min(len(samples) for samples in unstable_samples_per_xp)
    unstable_samples_per_xp = [samples[:min_len] for samples in unstable_samples_per_xp]
    return {f'noinput_{i}': [samples[i] for samples in unstable_samples_per_xp] for i in range(min_len)}


def get_samples_for_xps(xps: tp.List[dora.XP], **kwargs: tp.Any) -> tp.Dict[str, tp.List[Sample]]:
    """Samples of several XPs matched by id: {sample id: [sample of each XP]}.

    Keyword arguments are passed to `SampleManager.get_samples`.
    """
    managers = [SampleManager(xp) for xp in xps]
    samples_per_xp = [manager.get_samples(**kwargs) for manager in managers]
    stable_samples = _match_stable_samples(samples_per_xp)
    unstable_samples = _match_unstable_samples(samples_per_xp)
    return dict(stable_samples, **unstable_samples)
