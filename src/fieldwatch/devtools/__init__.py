"""Development tools that run a source checkout's deployment files on this machine:
nginx with the shipped configuration, Mosquitto with dynamic security, and the
scaled-out topology of ``deploy/compose/`` as local processes (``make topology``,
``python -m fieldwatch.devtools topology``). They need the checkout (``deploy/``) and
Debian's nginx and Mosquitto; an installed package does not use them."""
