"""Machinery every estimator shares, text or image, with or without torch.

The embedder protocol and its registry, parameter checks, devices, the
once-per-process model registry, atomic files and artefact manifests,
progress bars and optional imports. Nothing here imports the ``text`` or
``image`` packages, torch, or the command line.
"""
