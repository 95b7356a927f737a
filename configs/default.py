"""Default BRPPNet configuration: the original recipe at full size (RPCOCO-m).

Every other config imports this one and changes a few fields.

    python -m brppnet_jax.main --config=configs/default.py --workdir=/tmp/brppnet \
        --config.model.backbone_weights=yolov3_480000.h5 \
        --config.dataset.word_vectors=glove.840B.300d.txt

Needs what configs/rpcocom.py needs (it is that config, before a variant's changes).
Expect: no full run was measured here (see configs/rpcocom.py).
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
  config.dataset.word_vectors = ""  # GloVe-format text file (glove.840B.300d.txt).
  config.dataset.blind_text = False  # True: one fixed sentence for all (text-blind floor).
  # Grain worker processes: -1 is one per CPU this process may use (its affinity) but one,
  # left to the training loop, and at least 0; 0 runs in-process.
  config.dataset.num_workers = -1
  config.dataset.prefetch = 2  # Batches buffered per worker (prefetch threads in-process).

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
  # COCO-pretrained YOLOv3: keras-yolo3 `.h5` (the original's yolov3_480000.h5) or Darknet
  # `.weights`. A frozen backbone without one is an error unless allow_random_backbone.
  config.model.backbone_weights = ""
  config.model.backbone_init = "byname"  # byname: as the original; darknet: Darknet-53 + neck.
  config.model.allow_random_backbone = False
  # How frozen BatchNorms normalise in training: batch_stats (the original) | stored.
  config.model.frozen_bn = "batch_stats"
  config.model.text_padding = "original"  # original | masked (padding-invariant q).
  # True: a frozen table from dataset.word_vectors over every split's words, zero for words
  # the file lacks (the original). False: learned, initialised from the file if given.
  config.model.fixed_word_vectors = True
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
  # The face tests of evaluation.faces.DETECTORS (Haar about 1 s per image, the others less).
  config.compute_tdir = True
  config.num_image_summaries = 4
  config.distributed = False  # Call jax.distributed.initialize() first.
  # Persistent XLA compilation cache: "" is WORKDIR/compilation_cache, "off" disables it.
  config.compilation_cache_dir = ""
  # Resuming a checkpoint trained with other batch/data/model/loss/optimiser/seed settings
  # stops with an error naming the keys, unless this is True.
  config.allow_config_change = False
  return config
