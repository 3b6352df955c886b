"""Gradio web demos (``python -m demos.musicgen_app``, ``python -m demos.magnet_app``) and notebooks.

The demos need the optional ``demo`` extra: ``pip install -e '.[demo]'``.
"""
