"""One device's firmware update, end to end: see ``service``."""
