#!/bin/sh
# The demo model, from text to the shipped model, on CPU (README: The embedded demo model):
#   sh recipes/demo/run.sh            (from the repository root; re-running resumes every step)
# Needs espeak-ng, and the text corpora in ../shared/data (Tatoeba cmn-eng, AISHELL-1 transcripts).
set -eu
HERE=recipes/demo
WORK=$HERE/work
PYTHON=${PYTHON:-python}
export PYTHONPATH=${PYTHONPATH:-.}

# 1. split the text: 300 held-out Tatoeba pairs; no held-out Chinese or English sentence in training
$PYTHON $HERE/prepare.py $WORK --test-size 300 --seed 0
# 2. voice it with espeak-ng (voice cmn; per-sentence voice variant, speed 140-200 wpm, pitch 30-70)
$PYTHON -m funasr_nano.cli data synth $WORK/text/test.tsv $WORK/data/test --seed 1 --jobs 2
$PYTHON -m funasr_nano.cli data synth $WORK/text/train.tsv $WORK/data/train --seed 0 --jobs 2
$PYTHON -m funasr_nano.cli data synth $WORK/text/aishell.txt $WORK/data/aishell --seed 2 --jobs 2
# 3. compact tokenizer + random model of the demo size
[ -d $WORK/init ] || $PYTHON $HERE/build_model.py $WORK
# 4. train every module on the three tasks (resumes from the newest checkpoint): a first pass from
#    random weights (train.yaml -> WORK/run), then a shorter second pass from its export at a lower
#    peak LR (train2.yaml -> WORK/run2)
train() {  # config, run folder
    if [ -f $2/model/config.yaml ] || [ -f $2/model/config.json ]; then return; fi
    if ls -d $2/checkpoints/step-* >/dev/null 2>&1; then
        $PYTHON -m funasr_nano.cli -v train --config $1 --resume
    else
        $PYTHON -m funasr_nano.cli -v train --config $1
    fi
}
train $HERE/train.yaml $WORK/run
train $HERE/train2.yaml $WORK/run2
# 5. ship the second pass's newest checkpoint into funasr_nano/assets/demo, with the example and the
#    test subset
$PYTHON $HERE/ship.py $WORK --config $HERE/train2.yaml
# 6. measure it (README: The embedded demo model's table)
$PYTHON $HERE/evaluate.py $WORK/data/test/manifest.jsonl --real ../shared/audio/*.wav --json $WORK/eval.json
