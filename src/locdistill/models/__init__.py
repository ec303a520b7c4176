"""Detector parts: ``backbones/``, ``fpn.py``, ``heads/``, ``priors/``, ``assigners/``, ``losses/`` (the
families' objectives), ``detectors/`` (whole detectors and the dense-detector contract), ``build.py``
(``build_detector``: the one dispatch on ``model.type``), post-processing, NMS and
``from_checkpoint.py``."""
