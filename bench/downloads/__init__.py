"""The parts of bench/bench_downloads.py: the downloading devices (``client``) and nginx
(``nginx``)."""
