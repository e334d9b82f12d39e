"""Health exports uploaded in bulk (Apple Health, Android Health Connect): the upload,
the formats, and reading them into readings through the sync engine."""
