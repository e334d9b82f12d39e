"""A real Mosquitto for the tests and benchmarks: ``fieldwatch.devtools.mosquitto``
(``make topology`` uses it too)."""

from fieldwatch.devtools.mosquitto import Mosquitto, dynsec_plugin, free_port, mosquitto_binary

__all__ = ["Mosquitto", "dynsec_plugin", "free_port", "mosquitto_binary"]
