"""Shifts and what they do to a network (the measurement half of notebooks 01, 02 and 04-06).

- ``translation``    shift operators for every protocol (mosaic, circular, zero/mean canvas, crop)
- ``geometric``      rotation and scaling with the authors' scale list and resize rule (notebook 06)
- ``sweep``          the batched sweep engine (many heads, many shifts per forward pass, resumable,
                     ``torch.distributed``); ``sweep_result`` what it returns
- ``invariance``     invariance and equivariance measures (one relative-change measure for all)
- ``relative_loss``  the paper's "average relative loss" and every candidate reading of it
- ``periodicity``    spectra of responses over shifts, energy at the predicted periods, exact periods
- ``primer``         the toy networks of notebook 01
"""
