"""Serving: the web app (JSON API and page) and the dynamic batcher behind `python -m seq2seq.serve`."""
