"""Commands a user runs from a shell, on top of the library (nothing in the library imports them).

- ``sweep``        ``shiftinv-sweep`` / ``python -m shiftinv.commands.sweep`` (``torchrun``): export the
                   models notebook 03 trained and sweep them over shifts, on one or several GPUs
- ``models_file``  the file ``export`` writes: notebook 03's trunks and heads in one torch file
"""


class CommandError(Exception):
    """A problem with a command's input, reported as one message (no traceback) and exit status 2."""
