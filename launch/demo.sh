#!/usr/bin/env bash
# The whole product on the CPU, end to end: synthetic data -> TFDS -> training -> evaluation
# -> a protected image. `make demo` runs it inside the project's .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-demo_out}
py=${PYTHON:-.venv/bin/python}
export TF_CPP_MIN_LOG_LEVEL=2

echo "== 1/5 generating the synthetic twin in $out/raw"
$py -m brppnet_jax.data.synthetic --out "$out/raw" --seed 0 --num_train 2000 --num_test 300
echo "== 2/5 building it as a TFDS dataset in $out/tfds"
$py -m brppnet_jax.data.build --dataset=synthetic --manual_dir="$out/raw" --data_dir="$out/tfds"
echo "== 3/5 training configs/synthetic.py in $out/workdir"
$py -m brppnet_jax.main --config=configs/synthetic.py --workdir="$out/workdir" \
  --config.dataset.data_dir="$out/tfds" --alsologtostderr
echo "== 4/5 evaluating the best checkpoint"
$py -m brppnet_jax.main --config=configs/synthetic.py --workdir="$out/workdir" \
  --config.dataset.data_dir="$out/tfds" --mode=eval
echo "== 5/5 protecting one person in a test image"
image=$($py -c "import json,sys; a=json.load(open(sys.argv[1]))[0]; print(a['img_name'])" "$out/raw/anns/synthetic/test.json")
text=$($py -c "import json,sys; a=json.load(open(sys.argv[1]))[0]; print(a['sentences'][0]['sent'])" "$out/raw/anns/synthetic/test.json")
$py -m brppnet_jax.protect --workdir="$out/workdir" --image="$out/raw/images/train2014/$image" \
  --text="$text" --out="$out/protected.png" --save_mask="$out/mask.png" --overwrite
cat <<DONE

Done. What went where:
  synthetic images and annotations  $out/raw
  TFDS dataset (+ vocab.txt)        $out/tfds/rpcoco/synthetic
  checkpoints                       $out/workdir/checkpoints
  evaluation metrics (JSON lines)   $out/workdir/eval_metrics.jsonl  (training's)
                                    $out/workdir/checkpoint_evaluations.jsonl  (--mode=eval's)
  TensorBoard summaries             tensorboard --logdir $out/workdir
  protected example                 $out/protected.png  (mask: $out/mask.png)
DONE
