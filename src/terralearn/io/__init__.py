"""All file access: rasters, vectors, chip sets. No other module opens a file."""
