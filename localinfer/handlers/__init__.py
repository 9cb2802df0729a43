"""Model code: synchronous, device-bound, no event loop. See :mod:`localinfer.handlers.base`."""
