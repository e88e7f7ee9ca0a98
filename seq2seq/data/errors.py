"""The error of reading a corpus, raised by every reader (local files, the hub) and by the reading API."""


class CorpusError(ValueError):
    """A corpus cannot be found or read; the message names the file (and line) or the hub dataset."""
