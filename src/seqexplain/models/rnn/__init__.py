"""Native word-level recurrent language models (LSTM / GRU / RNN), their vocabularies and embeddings I/O."""

from seqexplain.models.rnn.lm import (
    RNNLanguageModel,
    RNNLMConfig,
    RNNLMOutput,
    dropout_from_keep_prob,
    load_rnn_lm,
)
from seqexplain.models.rnn.vocab import Vocab, WordTokenizer, embeddings_for_vocab, read_word2vec, write_word2vec

__all__ = [
    "RNNLMConfig",
    "RNNLMOutput",
    "RNNLanguageModel",
    "Vocab",
    "WordTokenizer",
    "dropout_from_keep_prob",
    "embeddings_for_vocab",
    "load_rnn_lm",
    "read_word2vec",
    "write_word2vec",
]
