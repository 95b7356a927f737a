"""Default BRPPNet configuration: the original recipe at full size (RPCOCO-m).

Every other config imports this one and changes a few fields.

    python -m brppnet_jax.main --config=configs/default.py --workdir=/tmp/brppnet
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  """Returns the full-size configuration (spec sections 2, 3, 5 and 7)."""
  config = ml_collections.ConfigDict()

  config.dataset = ml_collections.ConfigDict()
  config.dataset.name = "rpcoco/rpcocom"  # TFDS name/builder config.
  config.dataset.data_dir = ""  # TFDS data_dir; "" means TFDS's default.
  config.dataset.train_split = "train"
  config.dataset.eval_split = "testA"
  config.dataset.input_size = 416  # Letterbox size, a multiple of 32.
  config.dataset.word_len = 15  # Tokens per expression (20 for rpcocol).
  config.dataset.word_vectors = ""  # Optional GloVe-format text file.
  config.dataset.num_workers = 0  # Grain worker processes (0: in-process).
  config.dataset.prefetch = 2

  config.model = ml_collections.ConfigDict()
  config.model.name = "brppnet"
  config.model.seg_out_stride = 2  # 2, 4 or 8.
  config.model.hidden_dim = 256
  config.model.embed_dim = 300
  config.model.rnn_hidden_size = 1024
  config.model.rnn_dropout = 0.1
  config.model.vocab_size = 0  # Set from the vocabulary before the model is made.
  config.model.width = 1.0  # Channel multiplier; 1.0 is the published network.
  config.model.stage_blocks = (1, 2, 8, 8, 4)  # Darknet-53 residual blocks per stage.
  config.model.freeze_backbone = True
  config.model.backbone_weights = ""  # Optional Darknet yolov3.weights file.
  config.model.dtype = "float32"  # Activation dtype; "bfloat16" on accelerators.

  config.loss = ml_collections.ConfigDict()
  config.loss.name = "balanced_bce"  # balanced_bce | bce | weighted_bce
  config.loss.eps_pos = 1.0
  config.loss.eps_neg = -0.4
  config.loss.pos_weight = 3.0
  config.loss.average = False  # True: mean over pixels instead of sum / batch.
  config.loss.l2 = 5e-4

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.learning_rate = 1e-3
  config.optimizer.b1 = 0.9
  config.optimizer.b2 = 0.999
  config.optimizer.eps = 1e-7
  config.optimizer.constant_epochs = 10  # lr is constant for this many epochs,
  config.optimizer.decay_epochs = 10  # then halves every decay_epochs.

  config.seed = 10010
  config.batch_size = 24
  config.num_epochs = 50
  config.total_steps = 0  # > 0 overrides num_epochs.
  config.log_every_steps = 50
  config.eval_every_steps = 0  # 0: once per epoch.
  config.checkpoint_every_steps = 0  # 0: once per epoch.
  config.keep_checkpoints = 2  # Latest ones kept besides the best.
  config.eval_batch_size = 24
  config.eval_max_examples = 0  # > 0: evaluate only this many expressions.
  config.segment_thresh = 0.35
  config.compute_tdir = True  # Haar-cascade face test (slow: about 1 s per image).
  config.num_image_summaries = 4
  config.distributed = False  # Call jax.distributed.initialize() first.
  return config
