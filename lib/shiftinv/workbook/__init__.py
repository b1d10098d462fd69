"""Running the workbook: where things are, how results are kept, how notebooks run.

- ``paths``        folders resolved from the package location (figures, results, data)
- ``cache``        atomic writes, safe loading (``weights_only=True``), code versions, config-keyed caching
- ``runtime``      seeds, threads, devices, mixed precision, progress bars
- ``checkpoints``  checkpoint-and-resume and divergence checks shared by every training loop
- ``runner``, ``parameters``  ``make figures``: the notebooks through papermill, parameters checked first
- ``student``      student versions of the notebooks (solutions stripped)
- ``imageio``      reading image files: errors name the file, a folder keeps its good files
- ``labsetup``     JupyterLab set-up and its check
- ``readme``       the README's generated results blocks and the claims checked on their intervals
"""
