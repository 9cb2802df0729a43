"""The TUI's screens: one module each (models, monitor, chat, help)."""
