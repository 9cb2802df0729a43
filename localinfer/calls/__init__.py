"""One path for every request, whichever face it came through (HTTP routes or ``Engine``).

The faces parse their own input (JSON bodies, KServe tensors, Python arguments) and
render their own output; everything between is here, written once: the limits a request
must keep (:mod:`.limits`), the chat options and sampling defaults (:mod:`.options`) and
the handler's request built from them (:mod:`.generation`), which served model answers
a task (:mod:`.choice`), submitting with a deadline (:mod:`.deadline`), results turned
into usage and timing (:mod:`.outcome`), and the numbers ``/v1/stats`` and
``Engine.stats()`` report (:mod:`.stats`). :class:`~.calls.Calls` binds them to one
registry and its settings.

This package module imports nothing, so that the HTTP clients can read
:mod:`.options` without loading the runtime.
"""
