"""Models for land-cover classification: a per-pixel random-forest baseline and its safe storage."""
