"""Command line: ``localinfer serve``, ``localinfer tui``, ``localinfer pull`` …"""
