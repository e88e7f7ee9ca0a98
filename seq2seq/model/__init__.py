"""The encoder-decoder: recurrent cells, encoder, attention, decoder, and how its products run (bf16
products in training, int8 in decoding)."""
