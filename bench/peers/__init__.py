"""Peer servers running the same models as localinfer, for the ratios in the docs.

Each module is a runnable server (``python -m bench.peers.threaded --port N``) so the
bench can start it in a subprocess pinned to the server core, like every other server.
"""
