"""The special token ids every subword model of the project uses: batches, the model and search rely on
them without asking the tokenizer (`seq2seq.data.tokenizer` builds its SentencePiece models with them)."""

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
EOS_PIECE = "</s>"  # the end-of-sentence piece, as alignments show it
