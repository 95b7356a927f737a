"""A small BRPPNet that learns the synthetic twin on two CPU cores in minutes.

`make demo` runs it; by hand, after generating and building the data:

    python -m brppnet_jax.main --config=configs/synthetic.py --workdir=workdirs/synthetic \
        --config.dataset.data_dir=data/tfds
"""

from configs import default


def get_config():
  config = default.get_config()
  config.dataset.name = "rpcoco/synthetic"
  config.dataset.data_dir = "data/tfds"
  config.dataset.eval_split = "test"
  config.dataset.input_size = 128
  config.dataset.word_len = 15

  config.model.width = 0.125
  config.model.stage_blocks = (1, 1, 1, 1, 1)
  config.model.hidden_dim = 32
  config.model.embed_dim = 32
  config.model.rnn_hidden_size = 64
  config.model.seg_out_stride = 4
  # Nothing pretrained exists for this network, so it learns end to end.
  config.model.freeze_backbone = False

  config.batch_size = 16
  config.eval_batch_size = 32
  config.num_epochs = 0
  config.total_steps = 2000
  config.optimizer.constant_epochs = 1000  # No decay inside a short run.
  config.log_every_steps = 50
  config.eval_every_steps = 500
  config.checkpoint_every_steps = 250
  config.compute_tdir = False  # Synthetic people have no faces to detect.
  config.seed = 0
  return config
