"""Gradio demo for MusicGen: text (and melody) to music.

Run with ``python -m demos.musicgen_app`` (add ``--share`` for a public link, ``--model-path
FOLDER`` to serve a local model such as ``tests/reference/cases/musicgen_text_tiny``).
"""
from functools import partial
import typing as tp

import gradio as gr

from audiocraft.models import MusicGen
from demos.common import (DemoApp, check_generation_params, live_audio_widget, model_and_text_inputs,
                          numpy_audio_to_tensor, output_widgets, run_demo)

MODELS = (
    'facebook/musicgen-melody',
    'facebook/musicgen-small',
    'facebook/musicgen-medium',
    'facebook/musicgen-large',
    'facebook/musicgen-melody-large',
    'facebook/musicgen-stereo-small',
    'facebook/musicgen-stereo-medium',
    'facebook/musicgen-stereo-large',
    'facebook/musicgen-stereo-melody',
    'facebook/musicgen-stereo-melody-large',
    'demo',  # shipped with the package: works offline
)
MAX_DURATION = 120.0


def accepts_melody(model: tp.Any) -> bool:
    """Whether the model has a chroma (melody) conditioner."""
    return 'self_wav' in getattr(model.lm.condition_provider, 'conditioners', {})


class MusicGenApp(DemoApp):
    """One MusicGen demo instance: its own model holder and output folder."""

    def __init__(self, model_path: tp.Optional[str] = None, device: tp.Optional[str] = None):
        super().__init__(MusicGen, MODELS, model_path, device)

    def predict(self, model_name: str, text: str, melody: tp.Optional[tp.Tuple[int, tp.Any]],
                duration: float, top_k: float, top_p: float, temperature: float, cfg_coef: float,
                seed: float, progress: gr.Progress = gr.Progress()) -> tp.Iterator[tp.Tuple[tp.Any, tp.Any, tp.Any]]:
        """Generate one sample, streamed to the live player while generating (up to the model's
        max_duration); yields (live chunk, WAV path, waveform picture) updates."""
        if not model_name:
            raise gr.Error('Choose a model.')
        params = check_generation_params(duration=duration, top_k=top_k, top_p=top_p, temperature=temperature,
                                         cfg_coef=cfg_coef)
        if params['duration'] > MAX_DURATION:
            raise gr.Error(f'Duration must be between 0 and {MAX_DURATION:g} seconds.')
        melody_wav = numpy_audio_to_tensor(melody) if melody is not None else None
        with self.models.use(model_name) as model:
            model.set_generation_params(**params)
            stream = params['duration'] <= model.max_duration  # longer ones extend window by window
            if melody_wav is not None and accepts_melody(model):
                wav, sr = melody_wav
                call = partial(model.generate_with_chroma, [text], wav[None], sr, progress=True)
            else:
                if melody_wav is not None:
                    gr.Warning('This model takes no melody; generating from the text only.')
                call = partial(model.generate, [text], progress=True)
            if stream:
                yield from self.generate_stream(model, seed, progress, partial(call, stream=True, chunk_seconds=1.0))
            else:
                yield (gr.skip(), *self.generate(model, seed, progress, call))


def build_interface(app: MusicGenApp) -> gr.Blocks:
    """The page: model choice, description, melody, decoding parameters, audio and waveform."""
    with gr.Blocks(title='MusicGen', analytics_enabled=False) as blocks:
        gr.Markdown('# MusicGen\nText-to-music generation. Melody models also follow the melody of an '
                    'uploaded recording. Weights are licensed CC-BY-NC 4.0.')
        with gr.Row():
            with gr.Column():
                model, text = model_and_text_inputs(app, 'e.g. lo-fi hip hop with mellow piano')
                melody = gr.Audio(sources=['upload', 'microphone'], type='numpy', label='Melody (optional)',
                                  elem_id='melody')
                with gr.Row():
                    duration = gr.Slider(1, MAX_DURATION, value=10, step=0.5, label='Duration (s)',
                                         elem_id='duration')
                    seed = gr.Number(-1, precision=0, label='Seed (-1: random)', elem_id='seed')
                with gr.Row():
                    top_k = gr.Number(250, precision=0, label='Top-k', elem_id='top-k')
                    top_p = gr.Number(0.0, label='Top-p', elem_id='top-p')
                    temperature = gr.Number(1.0, label='Temperature', elem_id='temperature')
                    cfg_coef = gr.Number(3.0, label='Classifier-free guidance', elem_id='cfg-coef')
                generate = gr.Button('Generate', variant='primary', elem_id='generate')
            with gr.Column():
                live = live_audio_widget()
                audio, picture = output_widgets('Generated music')
        generate.click(app.predict, [model, text, melody, duration, top_k, top_p, temperature, cfg_coef, seed],
                       [live, audio, picture], concurrency_limit=1)
        gr.Examples([['An 80s driving pop song with heavy drums and synth pads in the background'],
                     ['A cheerful country song with acoustic guitars'],
                     ['lofi slow bpm electro chill with organic samples']], inputs=[text])
    return blocks


def main(argv: tp.Optional[tp.Sequence[str]] = None) -> None:
    """Command line entry point."""
    run_demo('MusicGen demo', MusicGenApp, build_interface, argv)


if __name__ == '__main__':
    main()
