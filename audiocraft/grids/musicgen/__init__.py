"""MusicGen grids."""
