"""BRPPNet on RPCOCO-l (RefCOCOg persons, umd split): longer expressions, batch 32.

    python -m brppnet_jax.main --config=configs/rpcocol.py --workdir=$HOME/workdirs/rpcocol \
        --config.dataset.data_dir=$HOME/tensorflow_datasets \
        --config.model.backbone_weights=yolov3_480000.h5 \
        --config.dataset.word_vectors=glove.840B.300d.txt

Needs: RPCOCO-l built with `python -m brppnet_jax.data.build --dataset=rpcocol ...` (COCO
train2014 images and the RPCOCO annotations and masks: see the README's Data section),
MCN's `yolov3_480000.h5` and GloVe 840B (`glove.840B.300d.txt`).
Expect: 50 epochs of the paper's recipe; no run was measured here (COCO images cannot
be downloaded on the development machines), so neither the runtime nor the mIoU is known yet.
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
