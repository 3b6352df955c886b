"""Gradio demo for MAGNeT: fast non-autoregressive text to music or sound.

Run with ``python -m demos.magnet_app`` (add ``--share`` for a public link, ``--model-path
FOLDER`` to serve a local model such as ``tests/reference/cases/magnet_tiny``).
"""
import typing as tp

import gradio as gr

from audiocraft.models import MAGNeT
from audiocraft.models.magnet import RELEASED_MAGNET_MODELS
from demos.common import DemoApp, check_generation_params, model_and_text_inputs, output_widgets, run_demo

MODELS = RELEASED_MAGNET_MODELS
# Starting points: MAGNeT's defaults for music; hotter sampling and stronger guidance for sound effects.
MUSIC_DEFAULTS = {'temperature': 3.0, 'top_p': 0.9, 'max_cfg_coef': 10.0, 'min_cfg_coef': 1.0,
                  'decoding_steps': (20, 10, 10, 10), 'span_arrangement': 'nonoverlap'}
SOUND_DEFAULTS = {'temperature': 3.5, 'top_p': 0.8, 'max_cfg_coef': 20.0, 'min_cfg_coef': 1.0,
                  'decoding_steps': (20, 10, 10, 10), 'span_arrangement': 'nonoverlap'}


def defaults_for(model_name: str) -> tp.Dict[str, tp.Any]:
    """Suggested decoding settings for a model name."""
    return SOUND_DEFAULTS if 'audio-magnet' in (model_name or '') else MUSIC_DEFAULTS


class MagnetApp(DemoApp):
    """One MAGNeT demo instance: its own model holder and output folder."""

    def __init__(self, model_path: tp.Optional[str] = None, device: tp.Optional[str] = None):
        super().__init__(MAGNeT, MODELS, model_path, device)

    def predict(self, model_name: str, text: str, temperature: float, top_p: float,
                max_cfg_coef: float, min_cfg_coef: float, steps_1: float, steps_2: float,
                steps_3: float, steps_4: float, span_arrangement: str, seed: float,
                progress: gr.Progress = gr.Progress()) -> tp.Tuple[str, tp.Any]:
        """Generate one sample; returns (WAV path, waveform picture)."""
        if not model_name:
            raise gr.Error('Choose a model.')
        steps = [s if s is not None else 0 for s in (steps_1, steps_2, steps_3, steps_4)]
        params = check_generation_params(temperature=temperature, top_p=top_p, max_cfg_coef=max_cfg_coef,
                                         min_cfg_coef=min_cfg_coef, decoding_steps=steps)
        with self.models.use(model_name) as model:
            # Models with more codebooks (none released) reuse the last count for the extra ones.
            steps = params.pop('decoding_steps')
            steps = steps + [steps[-1]] * max(0, model.lm.n_q - len(steps))
            try:
                model.set_generation_params(**params, decoding_steps=steps, span_arrangement=span_arrangement)
            except ValueError as exc:
                raise gr.Error(str(exc))
            return self.generate(model, seed, progress, lambda: model.generate([text], progress=True))


def build_interface(app: MagnetApp) -> gr.Blocks:
    """The page: model choice, description, decoding parameters, audio and waveform."""
    first = defaults_for(app.choices[0])
    with gr.Blocks(title='MAGNeT', analytics_enabled=False) as blocks:
        gr.Markdown('# MAGNeT\nMasked non-autoregressive generation of music (magnet-*) and sound effects '
                    '(audio-magnet-*). Samples last the model\'s training length (10 or 30 s). '
                    'Weights are licensed CC-BY-NC 4.0.')
        with gr.Row():
            with gr.Column():
                model, text = model_and_text_inputs(app, 'e.g. 80s electronic track with melodic synths')
                with gr.Row():
                    temperature = gr.Number(first['temperature'], label='Temperature', elem_id='temperature')
                    top_p = gr.Number(first['top_p'], label='Top-p', elem_id='top-p')
                    max_cfg = gr.Number(first['max_cfg_coef'], label='Max CFG coefficient', elem_id='max-cfg')
                    min_cfg = gr.Number(first['min_cfg_coef'], label='Min CFG coefficient', elem_id='min-cfg')
                with gr.Row():
                    steps = [gr.Number(value, precision=0, label=f'Decoding steps, codebook {idx + 1}',
                                       elem_id=f'steps-{idx + 1}')
                             for idx, value in enumerate(first['decoding_steps'])]
                with gr.Row():
                    span = gr.Radio(['nonoverlap', 'stride1'], value=first['span_arrangement'],
                                    label='Span arrangement', elem_id='span')
                    seed = gr.Number(-1, precision=0, label='Seed (-1: random)', elem_id='seed')
                generate = gr.Button('Generate', variant='primary', elem_id='generate')
            with gr.Column():
                audio, picture = output_widgets('Generated audio')

        def reset_defaults(name: str) -> tp.List[tp.Any]:
            values = defaults_for(name)
            return [values['temperature'], values['top_p'], values['max_cfg_coef'], values['min_cfg_coef'],
                    *values['decoding_steps'], values['span_arrangement']]

        model.change(reset_defaults, [model], [temperature, top_p, max_cfg, min_cfg, *steps, span])
        generate.click(app.predict, [model, text, temperature, top_p, max_cfg, min_cfg, *steps, span, seed],
                       [audio, picture], concurrency_limit=1)
        gr.Examples([['80s electronic track with melodic synthesizers, catchy beat and groovy bass'],
                     ['Earthy tones, environmentally conscious, ukulele-infused, harmonic, breezy, easygoing'],
                     ['Seagulls squawking as ocean waves crash while wind blows heavily into a microphone.']],
                    inputs=[text])
    return blocks


def main(argv: tp.Optional[tp.Sequence[str]] = None) -> None:
    """Command line entry point."""
    run_demo('MAGNeT demo', MagnetApp, build_interface, argv)


if __name__ == '__main__':
    main()
