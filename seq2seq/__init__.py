"""seq2seq: recurrent (RNN, LSTM, GRU) encoder-decoder models for machine translation."""

__version__ = "0.1.0"
