"""The vendor clouds Fieldwatch synchronises from, one module each, and what each
declares about itself (data types, push or poll, history, quotas, sunset)."""
