"""The device side: what runs on (or stands in for) the hardware.

Nothing here imports `hwloop` or `backends`: like real firmware, the device
side knows only its own configuration and the wire protocol.
"""
