"""Cython kernel modules (one per kernel family) and their C sources in src/."""
