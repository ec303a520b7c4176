"""Priors per FPN level (``anchors.py``: one square anchor per cell, GFL/ATSS; ``AnchorGrid`` caches
everything that depends only on the feature-map sizes)."""
