"""Looking at runs and data: ``locdistill analyze`` (teacher vs students on a validation set:
edge distributions, edge errors, KL per FPN level, AP by IoU, a report), ``locdistill plot`` (training
curves of work dirs) and ``locdistill inspect-data`` (class counts, box sizes, drawn ground truth).

* :mod:`~locdistill.analysis.edges`: the edge-distribution figure (also the demo's).
* :mod:`~locdistill.analysis.collect`: one pass of several models, gathering errors, KL, detections.
* :mod:`~locdistill.analysis.figures`, :mod:`~locdistill.analysis.report`: the PNGs and report.md/json.
* :mod:`~locdistill.analysis.analyze`: the ``analyze`` command.
* :mod:`~locdistill.analysis.curves`: the ``plot`` command.
* :mod:`~locdistill.analysis.inspect_data`: the ``inspect-data`` command.
"""
