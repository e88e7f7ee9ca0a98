"""Decoding: greedy, beam and forced search over the decoder's step, translating and scoring lists of
sentences, ensembles, lexical shortlists, alignments, and loading checkpoints for all of it."""
