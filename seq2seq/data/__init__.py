"""Data: parallel corpora (local files or the hub), SentencePiece tokenizers, the encoded training set and
its cache, subword sampling, and batches."""
