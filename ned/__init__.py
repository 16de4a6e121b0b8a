"""NED: speech-preserving emotion editing of faces in real videos (CPU first)."""

__version__ = "0.1.0"
