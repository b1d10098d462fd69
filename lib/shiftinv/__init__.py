"""shiftinv: the library behind the translation-invariance workbook.

Modules (each small, typed and tested):

- ``paths``      folders resolved from the package location
- ``figures``    one helper that saves a figure as PNG + PDF + its data
- ``utils``      seeding, device choice, atomic saving, config-keyed caching
- ``notebooks``  headless execution of the jupytext notebooks with papermill
"""

__version__ = "0.1.0"
