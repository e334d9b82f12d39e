"""The parts of bench/bench_mqtt_clients.py: the publishers (``publishers``), the candidate
subscribers (``subscribers``) and one measured run (``runs``)."""
