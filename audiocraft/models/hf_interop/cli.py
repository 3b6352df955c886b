"""``python -m audiocraft convert --to {transformers,audiocraft} SRC DST``: the command around this package.

Stdout carries the written folder's path; refusals and bad inputs end with one line on stderr, exit code 2.
"""
import argparse
import sys
import typing as tp

EXIT_USAGE = 2


def add_convert_parser(sub: tp.Any) -> argparse.ArgumentParser:
    """Add the ``convert`` sub-command to the ``audiocraft`` command's sub-parsers."""
    conv = sub.add_parser(
        'convert', help="convert a MusicGen between AudioCraft's and Hugging Face transformers' formats",
        description="Convert a MusicGen checkpoint. --to transformers: SRC is an AudioCraft pretrained folder "
                    "(state_dict.bin + compression_state_dict.bin), a hub id or a training checkpoint; DST gets "
                    "config.json + model.safetensors for MusicgenForConditionalGeneration (or the Melody class). "
                    "--to audiocraft: SRC is a transformers MusicGen folder or hub id; DST gets state_dict.bin + "
                    "compression_state_dict.bin. See docs/TRANSFORMERS.md.")
    conv.add_argument('--to', required=True, choices=('transformers', 'audiocraft'), help='target format')
    conv.add_argument('src', help='source checkpoint (folder, hub id or file)')
    conv.add_argument('dst', help='output folder')
    conv.add_argument('--dtype', choices=('float32', 'float16', 'bfloat16'), default='float32',
                      help='--to transformers: dtype of the written weights')
    conv.add_argument('--text-encoder', choices=('embed', 'by-name'), default='embed',
                      help="--to audiocraft: keep the checkpoint's T5 weights in state_dict.bin (embed) or "
                           "load T5 by name like the released models (by-name)")
    return conv


def run_convert(args: argparse.Namespace) -> int:
    """Run ``convert``; returns the exit code."""
    import torch
    from .errors import NotConvertibleError
    from ...utils.export import export_to_audiocraft, export_to_transformers
    try:
        if args.to == 'transformers':
            out = export_to_transformers(args.src, args.dst, dtype=getattr(torch, args.dtype))
        else:
            out = export_to_audiocraft(args.src, args.dst, embed_text_encoder=args.text_encoder == 'embed')
    except (NotConvertibleError, FileNotFoundError) as exc:
        print(f'audiocraft convert: error: {exc}', file=sys.stderr)
        return EXIT_USAGE
    print(out, flush=True)
    return 0
