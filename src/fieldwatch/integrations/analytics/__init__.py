"""Analytics of devices fed by vendor clouds: usage, data quality, sync performance."""
