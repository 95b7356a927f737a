"""BRPPNet on RPCOCO-m (RefCOCO+ persons, unc split), the original recipe.

    python -m brppnet_jax.main --config=configs/rpcocom.py --workdir=$HOME/workdirs/rpcocom \
        --config.dataset.data_dir=$HOME/tensorflow_datasets \
        --config.model.backbone_weights=yolov3_480000.h5 \
        --config.dataset.word_vectors=glove.840B.300d.txt
"""

from configs import default


def get_config():
  config = default.get_config()
  config.dataset.name = "rpcoco/rpcocom"
  config.dataset.eval_split = "testA"
  return config
