"""Training objectives of the detector families, on top of the loss functions of
:mod:`locdistill.losses` (``gfl.py``: QFL + GIoU + DFL with mmdetection's normalisation)."""
