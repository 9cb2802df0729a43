"""``localinfer tui``: the desktop face (Textual) — download models, watch the machine, chat.

It talks to the runtime only through :mod:`localinfer.client`, so it drives a remote
server (``--url``) as well as the one it starts in its own event loop.
"""
