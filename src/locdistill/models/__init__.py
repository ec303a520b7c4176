"""Detector parts: backbones, FPN, GFL head, priors, ATSS, post-processing and NMS."""
