"""BRPPNet on RPCOCO-m (RefCOCO+ persons, unc split), the original recipe.

    python -m brppnet_jax.main --config=configs/rpcocom.py --workdir=$HOME/workdirs/rpcocom \
        --config.dataset.data_dir=$HOME/tensorflow_datasets \
        --config.model.backbone_weights=yolov3_480000.h5 \
        --config.dataset.word_vectors=glove.840B.300d.txt

Needs: RPCOCO-m built with `python -m brppnet_jax.data.build --dataset=rpcocom ...` (COCO
train2014 images and the RPCOCO annotations and masks: see the README's Data section),
MCN's `yolov3_480000.h5` and GloVe 840B (`glove.840B.300d.txt`).
Expect: 50 epochs of the paper's recipe; no run was measured here (COCO images cannot
be downloaded on the development machines), so neither the runtime nor the mIoU is known yet.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.dataset.name = "rpcoco/rpcocom"
  config.dataset.eval_split = "testA"
  return config
