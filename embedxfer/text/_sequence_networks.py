"""Small torch networks over word-id sequences, for ``SequenceClassifier``.

Imported only when a ``SequenceClassifier`` is fitted or rebuilt, since it
needs torch at import time.
"""

import torch
from torch import nn

CNN_KERNELS = (3, 4, 5)


class SequenceNet(nn.Module):
    """Embedding -> encoder over the sequence -> pooled vector -> linear layer.

    ``"bigru"`` / ``"bilstm"``: a one-layer bidirectional RNN over the packed
    sequence, its outputs max- and mean-pooled over the real tokens (Conneau
    et al. 2017 use the max). ``"cnn"``: 1-D convolutions of widths 3, 4 and
    5 with ``hidden_size`` filters each, ReLU and max over time (Kim 2014).

    Parameters
    ----------
    n_rows, dim : int
        Embedding table shape.
    architecture : str
    hidden_size : int
    n_classes : int
    dropout : float
        On the embedded tokens and on the pooled vector.
    padding_idx : int
        Row of the embedding table that pads (kept at zero).
    """

    def __init__(self, n_rows, dim, architecture, hidden_size, n_classes, dropout, *, padding_idx):
        super().__init__()
        self.architecture = architecture
        self.embedding = nn.Embedding(n_rows, dim, padding_idx=padding_idx)
        self.dropout = nn.Dropout(dropout)
        if architecture in ("bigru", "bilstm"):
            rnn = nn.GRU if architecture == "bigru" else nn.LSTM
            self.rnn = rnn(dim, hidden_size, batch_first=True, bidirectional=True)
            self.n_features = 4 * hidden_size
        elif architecture == "cnn":
            self.convs = nn.ModuleList(
                nn.Conv1d(dim, hidden_size, kernel_size=k) for k in CNN_KERNELS
            )
            self.n_features = len(CNN_KERNELS) * hidden_size
        else:  # pragma: no cover - checked by the estimator
            raise ValueError(architecture)
        self.out = nn.Linear(self.n_features, n_classes)

    def features(self, ids, lengths):
        """Pooled document vectors of a padded batch ``ids`` with true ``lengths``."""
        x = self.dropout(self.embedding(ids))
        if self.architecture == "cnn":
            x = x.transpose(1, 2)
            return torch.cat([torch.relu(conv(x)).amax(dim=2) for conv in self.convs], dim=1)
        packed = nn.utils.rnn.pack_padded_sequence(
            x, lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        out, _ = self.rnn(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=ids.shape[1])
        mask = torch.arange(ids.shape[1], device=ids.device)[None, :] < lengths[:, None]
        mask = mask.unsqueeze(-1)
        neg = torch.finfo(out.dtype).min
        max_pool = out.masked_fill(~mask, neg).amax(dim=1)
        mean_pool = (out * mask).sum(1) / lengths[:, None].to(out.dtype)
        return torch.cat([max_pool, mean_pool], dim=1)

    def forward(self, ids, lengths):
        return self.out(self.dropout(self.features(ids, lengths)))
