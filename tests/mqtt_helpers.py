"""A real Mosquitto for the tests and benchmarks: ``fieldwatch.devtools.mosquitto``
(``make topology`` uses it too), and the version of the one installed."""

import re
import subprocess

from fieldwatch.devtools.mosquitto import Mosquitto, dynsec_plugin, free_port, mosquitto_binary

__all__ = ["Mosquitto", "dynsec_plugin", "free_port", "mosquitto_binary", "mosquitto_version"]


def mosquitto_version() -> tuple[int, ...]:
    """The installed Mosquitto's version, such as (2, 0, 11); () when it is not known."""
    binary = mosquitto_binary()
    if binary is None:
        return ()
    out = subprocess.run([binary, "-h"], capture_output=True, text=True, check=False).stdout
    found = re.search(r"mosquitto version (\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(part) for part in found.groups()) if found else ()
