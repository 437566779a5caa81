"""Training with torch, shared by the text and image classifiers.

``training`` holds the epoch loop in named, overridable steps and the
classifier mixin built on it; ``persistence`` saves and loads trained
weights as safetensors beside a JSON description.
"""
