"""MAGNeT grids."""
