"""TerraLearn: deep learning on geospatial rasters, from training chips to classified maps."""

__version__ = "0.1.0"
