"""Customer registry API."""
