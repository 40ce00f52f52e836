"""Model builders, datasets, format converters and the content-addressed artefact cache.

Nothing here imports TensorFlow at import time: see `model_zoo.artifacts` for the public entry points.
"""
