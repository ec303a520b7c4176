"""Whole detectors: backbone -> FPN -> head with ``assign``, ``loss`` and ``predict`` (``gfl.py``: GFL
v1/v2)."""
