"""AudioGen grids."""
