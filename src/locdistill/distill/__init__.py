"""Localization Distillation: regions (where to distil), LD/KD losses, and the teacher-student wrapper."""
