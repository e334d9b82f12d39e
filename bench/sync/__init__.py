"""The vendor sync benchmark's parts: the Oura stand-in in a process of its own."""
