"""The serving layer: a Flask JSON API and web UI that merge the batch and speed views (see app.py)."""
