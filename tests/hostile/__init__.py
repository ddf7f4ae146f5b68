"""Hostile traffic against the production server on 127.0.0.1, bounded in count and time."""
