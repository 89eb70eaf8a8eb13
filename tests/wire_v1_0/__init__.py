"""Protocol version 1.0, frozen: the old peer of the compatibility tests.

A verbatim copy of our own wire code as released with protocol 1.0 (commit
a5bd8df): ``firmware_models/wire/{cobs,errors,frame,link,messages,transport}.py``,
the firmware command loop ``firmware_models/qif_chip/firmware.py`` and the
host's ``backends/qif/client.py``, with only the imports changed so that it
runs beside the current code. It stands for boards and hosts already in the
field: `tests/test_link_versions.py` runs it against the current firmware and
host. Do not fix bugs here; they are what an old peer has.
"""
