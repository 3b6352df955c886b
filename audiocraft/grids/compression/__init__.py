"""EnCodec compression model grids."""
