"""`make bench`: the service side by side with the tutorial baseline and a bare-WSGI floor (see run.py)."""
