"""Where readings live: series, the repository, partitions, rollups and retention."""
