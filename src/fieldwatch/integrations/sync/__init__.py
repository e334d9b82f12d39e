"""Synchronising devices fed by vendor clouds: importing them, sync runs (the history),
the runner that executes one and the engine that schedules, claims and resumes them."""
