"""Audit any image classifier under shifts: one grid of shifted views, every published measure, a report.

- ``models``    the model under audit (:class:`~shiftinv.audit.models.AuditModel`): a torch module or any callable
- ``loaders``   models from files and names (TorchScript, factory + state dict, torchvision / timm names,
                LiteRT files, the workbook's own heads)
- ``images``    images from a folder, an ImageFolder or a labels file, as sources with a crop margin
- ``protocol``  presets: the offsets, the protocols, the statement of how each number was measured
- ``grid``      the one grid of shifted views per model and protocol (the sweep engine, resumable)
- ``measures``  every measure indexed from the grid, per image, with bootstrap intervals and paired comparisons
- ``layers``    forward hooks: per-layer outputs and strides of a torch model (per-layer equivariance)
- ``periods``   why: the output's spectrum at the model's stride periods, per-layer equivariance by phase
- ``run``       :func:`~shiftinv.audit.run.audit`: all of it for several models; ``report`` writes HTML, JSON, CSV
- ``subject``   what notebook 11 audits (the user's model, the LiteRT MobileNetV2, or the workbook's heads)
- ``cli``       the ``shiftinv-audit`` command

Depends on ``shifts``, ``models``, ``workbook`` (and reads ``study`` for the workbook's own heads and
the bootstrap); ``viz.audit_plots`` draws its figures.

Notebook 11 (``11_audit_your_model``) calls it; its figures are drawn by :mod:`shiftinv.viz.audit_plots`.
"""
