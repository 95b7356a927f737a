"""Text encoder: word embedding -> input dropout -> bidirectional GRU, directions summed.

The embedding table is `params["text_encoder"]["embedding"]["embedding"]`
([vocab_size, embed_dim]); training code overwrites it with GloVe vectors.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp


class TextEncoder(nn.Module):
  """Maps tokens [N, T] (0 = trailing padding) to the sentence vector q [N, hidden_size].

  q is the sum of the GRU outputs over the valid steps only, so padding never changes it
  and an all-padding sentence gives q = 0. It runs in float32: it is cheap, and a
  recurrence in bfloat16 would lose precision at every step.
  """

  vocab_size: int
  embed_dim: int = 300
  hidden_size: int = 1024
  dropout_rate: float = 0.1

  @nn.compact
  def __call__(self, tokens: jnp.ndarray, train: bool) -> jnp.ndarray:
    lengths = jnp.sum(tokens != 0, axis=-1).astype(jnp.int32)
    valid = jnp.arange(tokens.shape[-1])[None, :] < lengths[:, None]
    x = nn.Embed(self.vocab_size, self.embed_dim, name="embedding")(tokens)
    x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
    bigru = nn.Bidirectional(
        nn.RNN(nn.GRUCell(self.hidden_size, name="gru_forward")),
        nn.RNN(nn.GRUCell(self.hidden_size, name="gru_backward")),
        merge_fn=jnp.add, name="bigru")
    h = bigru(x, seq_lengths=lengths)
    return jnp.sum(jnp.where(valid[..., None], h, 0.0), axis=1)
