"""What the benchmarks share, once.

- ``database``: a scratch PostgreSQL database, the server's environment and the CLI
  (migrations, the benchmark's admin);
- ``server``: ``fieldwatch serve`` (or another ASGI server) as a subprocess, and logging in;
- ``fleet``: devices made through the API, with a token each;
- ``broker``: Mosquitto for the MQTT benchmarks, and publishing to it with paho;
- ``mqtt_devices``: many MQTT devices at little CPU cost (pre-encoded packets);
- ``timing``: the clock shared by the benchmark's processes, timed requests;
- ``results``: percentiles, figures printed as they are measured, the results files.

Importing the package puts the repository root on ``sys.path``: the broker is the test
suite's (``tests.mqtt_helpers``).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
