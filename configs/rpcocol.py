"""BRPPNet on RPCOCO-l (RefCOCOg persons, umd split): longer expressions, batch 32.

    python -m brppnet_jax.main --config=configs/rpcocol.py --workdir=$HOME/workdirs/rpcocol \
        --config.dataset.data_dir=$HOME/tensorflow_datasets \
        --config.model.backbone_weights=yolov3_480000.h5 \
        --config.dataset.word_vectors=glove.840B.300d.txt
"""

from configs import default


def get_config():
  config = default.get_config()
  config.dataset.name = "rpcoco/rpcocol"
  config.dataset.eval_split = "test"
  config.dataset.word_len = 20
  config.batch_size = 32
  config.eval_batch_size = 32
  return config
