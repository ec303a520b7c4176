"""Which prior learns what: ``assignment.py`` (the :class:`Assignment` of a batch, the structure every
family's assigner fills and the losses and ``distill/`` read) and the assigners (``atss.py``: ATSS)."""
