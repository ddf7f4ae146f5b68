"""`make bench`: the service side by side with the tutorial baseline and a Flask floor (see run.py)."""
