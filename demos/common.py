"""Pieces shared by the Gradio demos: the per-app model holder, audio conversion and the
waveform picture, and the command line every demo accepts."""
import argparse
import contextlib
import gc
import tempfile
import threading
import typing as tp
from pathlib import Path

import gradio as gr
import numpy as np
import torch
from PIL import Image, ImageDraw

WAVEFORM_SIZE = (800, 160)
WAVEFORM_COLOR = (255, 118, 0)
WAVEFORM_BACKGROUND = (24, 24, 27)


class ModelHolder:
    """Holds at most one loaded model for one app instance.

    Generation runs inside `use(name)`, which keeps the lock, so a request never sees the
    model swapped by another request halfway through. Nothing is shared between apps.
    """

    def __init__(self, loader: tp.Callable[[str, str], tp.Any], device: str):
        self.loader = loader
        self.device = device
        self._lock = threading.Lock()
        self._name: tp.Optional[str] = None
        self._model: tp.Any = None

    @contextlib.contextmanager
    def use(self, name: str) -> tp.Iterator[tp.Any]:
        """Context giving the model called `name`, loading it (and dropping the previous one) if needed."""
        with self._lock:
            if name != self._name:
                self._model, self._name = None, None
                gc.collect()
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                self._model = self.loader(name, self.device)
                self._name = name
            yield self._model


def numpy_audio_to_tensor(audio: tp.Tuple[int, np.ndarray]) -> tp.Tuple[torch.Tensor, int]:
    """Gradio's `(sample_rate, array)` (int16 or float, [T] or [T, C]) to a float tensor [C, T]."""
    sample_rate, data = audio
    wav = torch.from_numpy(np.asarray(data))
    if wav.dtype == torch.int16:
        wav = wav.float() / 2 ** 15
    elif wav.dtype == torch.int32:
        wav = wav.float() / 2 ** 31
    else:
        wav = wav.float()
    wav = wav[None] if wav.dim() == 1 else wav.t()
    return wav.contiguous(), int(sample_rate)


def waveform_image(wav: torch.Tensor, size: tp.Tuple[int, int] = WAVEFORM_SIZE) -> Image.Image:
    """Picture of a waveform [C, T]: min/max envelope of the channel mean, one bar per pixel column."""
    width, height = size
    mono = wav.detach().float().cpu().mean(dim=0)
    image = Image.new('RGB', size, WAVEFORM_BACKGROUND)
    draw = ImageDraw.Draw(image)
    middle = height / 2
    draw.line([(0, middle), (width, middle)], fill=(63, 63, 70))
    if mono.numel() == 0:
        return image
    peak = float(mono.abs().max().clamp_min(1e-8))
    columns = torch.tensor_split(mono / peak, min(width, mono.numel()))
    scale = width / len(columns)
    for idx, column in enumerate(columns):
        low, high = float(column.min()), float(column.max())
        x = idx * scale
        draw.rectangle([x, middle - high * (middle - 4), x + max(scale - 1, 0), middle - low * (middle - 4)],
                       fill=WAVEFORM_COLOR)
    return image


class OutputFolder:
    """A temporary folder owned by one app; results are written there and served by Gradio."""

    def __init__(self, prefix: str):
        # Inside the system temp dir, which Gradio allows serving files from.
        self.path = Path(tempfile.mkdtemp(prefix=prefix))
        self._count = 0
        self._lock = threading.Lock()

    def write(self, wav: torch.Tensor, sample_rate: int) -> Path:
        """Write one waveform [C, T] with loudness normalisation; returns the WAV path."""
        from audiocraft.data.audio import audio_write
        with self._lock:
            self._count += 1
            stem = self.path / f'sample_{self._count:04d}'
        return Path(audio_write(stem, wav.detach().cpu().float(), sample_rate, strategy='loudness',
                                loudness_compressor=True))


def check_generation_params(**params: tp.Any) -> tp.Dict[str, tp.Any]:
    """The library's one validation of generation parameters (as the API and the CLI), its message
    shown in the page; returns the values normalised."""
    from audiocraft.models.generation_params import validate_generation_params
    if any(value is None for value in params.values()):
        missing = ', '.join(name for name, value in params.items() if value is None)
        raise gr.Error(f'Fill in {missing}.')
    try:
        return validate_generation_params(**params)
    except ValueError as exc:
        raise gr.Error(str(exc))


def load_pretrained(cls: tp.Any, name: str, device: str) -> tp.Any:
    """`cls.get_pretrained(name)`, reporting failures in the page instead of as a traceback."""
    try:
        if getattr(cls, '__name__', '') == 'MusicGen':
            # An unreachable hub falls back to the offline 'demo' model, saying so on the console.
            from audiocraft.models.musicgen import get_pretrained_or_demo
            return get_pretrained_or_demo(name, device=device)
        return cls.get_pretrained(name, device=device)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise gr.Error(f"Could not load model '{name}': {exc}. Pass a local folder holding state_dict.bin "
                       "and compression_state_dict.bin with --model-path, or check the hub connection.")


class DemoApp:
    """One demo instance: its own model holder, output folder and model list.

    Args:
        model_class: MusicGen, MAGNeT...: its `get_pretrained` loads the chosen model.
        released: names offered in the model list.
        model_path: a local model offered first, if given.
        device: where models run (default: cuda when available).
    """

    def __init__(self, model_class: tp.Any, released: tp.Sequence[str], model_path: tp.Optional[str] = None,
                 device: tp.Optional[str] = None):
        self.models = ModelHolder(lambda name, dev: load_pretrained(model_class, name, dev), pick_device(device))
        self.outputs = OutputFolder(f'{model_class.__name__.lower()}_demo_')
        self.choices = ([model_path] if model_path else []) + [m for m in released if m != model_path]

    def generate(self, model: tp.Any, seed: tp.Optional[float], progress: tp.Any,
                 call: tp.Callable[[], torch.Tensor]) -> tp.Tuple[str, Image.Image]:
        """Run `call` (a generate method of `model`) with the page's progress bar and seed;
        returns the written WAV path of the first sample and its waveform picture."""
        model.set_custom_progress_callback(lambda done, total: progress((done, total), unit='steps'))
        if seed is not None and seed >= 0:
            torch.manual_seed(int(seed))
        try:
            wav = call()[0]
        finally:
            model.set_custom_progress_callback(None)
        return str(self.outputs.write(wav, model.sample_rate)), waveform_image(wav)

    def generate_stream(self, model: tp.Any, seed: tp.Optional[float], progress: tp.Any,
                        stream: tp.Callable[[], tp.Iterator[torch.Tensor]]
                        ) -> tp.Iterator[tp.Tuple[tp.Any, tp.Any, tp.Any]]:
        """Like `generate`, for a streaming call (`generate(..., stream=True)`): yields
        (WAV bytes of each new chunk for the live player, skip, skip) while generating, then
        (skip, written WAV path, waveform picture) of the whole first sample."""
        model.set_custom_progress_callback(lambda done, total: progress((done, total), unit='steps'))
        if seed is not None and seed >= 0:
            torch.manual_seed(int(seed))
        chunks = []
        try:
            for chunk in stream():
                chunks.append(chunk[0])
                yield wav_bytes(chunk[0], model.sample_rate), gr.skip(), gr.skip()
        finally:
            model.set_custom_progress_callback(None)
        wav = torch.cat(chunks, dim=-1)
        yield gr.skip(), str(self.outputs.write(wav, model.sample_rate)), waveform_image(wav)


def wav_bytes(wav: torch.Tensor, sample_rate: int) -> bytes:
    """A WAV file (16-bit PCM, no normalisation: chunks of one stream keep one scale) of `wav` [C, T]."""
    import io
    import wave
    pcm = (wav.detach().cpu().float().clamp(-1, 1) * 32767).round().short().t().contiguous().numpy()
    buffer = io.BytesIO()
    with wave.open(buffer, 'wb') as out:
        out.setnchannels(wav.shape[0])
        out.setsampwidth(2)
        out.setframerate(int(sample_rate))
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()


def demo_parser(description: str) -> argparse.ArgumentParser:
    """Arguments shared by the demos."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('--listen', default='127.0.0.1',
                        help='address to serve on; 0.0.0.0 makes the demo reachable from other machines')
    parser.add_argument('--server_port', '--server-port', type=int, default=0,
                        help='port to serve on; 0 picks the first free port from 7860')
    parser.add_argument('--share', action='store_true', help='also create a public gradio.live link')
    parser.add_argument('--username', default='', help='user name for basic authentication')
    parser.add_argument('--password', default='', help='password for basic authentication')
    parser.add_argument('--model', '--model-path', dest='model_path', default=None,
                        help='a local model folder (or hub id) to offer first in the model list')
    parser.add_argument('--device', default=None, help="'cpu' or 'cuda' (default: cuda when available)")
    return parser


def launch(blocks: tp.Any, args: argparse.Namespace, **kwargs: tp.Any) -> tp.Any:
    """Launch a demo with the shared command line options."""
    auth = (args.username, args.password) if args.username else None
    return blocks.queue().launch(server_name=args.listen, server_port=args.server_port or None,
                                 share=args.share, auth=auth, **kwargs)


def model_and_text_inputs(app: DemoApp, placeholder: str) -> tp.Tuple[tp.Any, tp.Any]:
    """The model dropdown and the description box that start every demo form."""
    model = gr.Dropdown(app.choices, value=app.choices[0], label='Model', allow_custom_value=True, elem_id='model')
    text = gr.Textbox(label='Description', placeholder=placeholder, lines=2, elem_id='description')
    return model, text


def live_audio_widget() -> tp.Any:
    """The player that plays the audio as it is generated (fed chunk by chunk)."""
    return gr.Audio(label='Live (plays while generating)', streaming=True, autoplay=True, interactive=False,
                    elem_id='live-audio')


def output_widgets(audio_label: str) -> tp.Tuple[tp.Any, tp.Any]:
    """The generated audio player and its waveform picture."""
    audio = gr.Audio(label=audio_label, type='filepath', interactive=False, elem_id='output-audio')
    picture = gr.Image(label='Waveform', type='pil', interactive=False, elem_id='waveform')
    return audio, picture


def run_demo(description: str, app_class: tp.Callable[..., tp.Any],
             build_interface: tp.Callable[[tp.Any], tp.Any], argv: tp.Optional[tp.Sequence[str]] = None) -> tp.Any:
    """Parse the shared command line, build the app and its page, and serve it."""
    args = demo_parser(description).parse_args(argv)
    app = app_class(model_path=args.model_path, device=args.device)
    return launch(build_interface(app), args)


def pick_device(device: tp.Optional[str]) -> str:
    """Default device for demo models."""
    return device or ('cuda' if torch.cuda.is_available() else 'cpu')
