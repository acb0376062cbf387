"""Text to token ids: the byte-level BPE trainer (bpe.py) and OpenAI's tokenizer with its
vocabulary shipped in the package (tokenizer.py). Every tokenizer is called the same way:
``tokenizer(list_of_str) -> (N, context_length) int64 ids``."""
