"""Dense heads: layers and forward only (``outputs.py``: the raw per-level outputs, their flattening per
prior and a head's tower features; ``gfl.py``: the GFL v1/v2 head)."""
