"""Pure geometry maths: grids, tiling, splits, statistics. No file access, no torch."""
