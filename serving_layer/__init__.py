"""The serving layer (Flask JSON API and web UI merging the batch and speed views): see the open issue.

It reads the views through `readnext.view_reader` and the current model through `readnext.model`.
"""
