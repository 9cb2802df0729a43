"""Small models of your own kind of code, served by ``localinfer serve`` with no arguments.

They need nothing but the standard library, so the first command works offline.
"""
