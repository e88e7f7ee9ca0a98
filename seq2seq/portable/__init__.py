"""Translating with an export folder (`python -m seq2seq.export`) without PyTorch: numpy, onnxruntime and
sentencepiece are all this subpackage needs (with the package's tokenizer, which needs no more), so a
deployment installs those three and nothing of the rest.

`translator.ExportedTranslator` loads a folder and translates lists of sentences with greedy or beam search
(`search`); `python -m seq2seq.portable FOLDER < input > output` is the command, one line out per line in.
"""
