"""Decoding: greedy, beam and forced search over the decoder's step (search), the model as that step and one batch
decoded (model_search), prefixes and required phrases (steering), sampling, translating and scoring lists of
sentences (inference), ensembles, lexical shortlists, alignments, and loading checkpoints for all of it."""
