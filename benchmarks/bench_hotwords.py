"""Recall of planted hotwords among 10,000 distractors, from a real CTC read-out of synthetic speech.

No released Fun-ASR-Nano weights are on our machines, so the first-pass read-out comes from the
embedded demo model (trained here on espeak-ng speech with an auxiliary CTC loss: the greedy CTC
read-out of its adaptor frames, ``recipes/demo/evaluate.py: ctc_readout``, 18 % CER on its held-out
set). Sentences with a planted name or place (``--planted`` of them, 4 templates) are synthesized with
espeak-ng (varied voice, rate and pitch, as ``funasr-nano data synth``), read out, and the hotword list
(the planted words + ``--distractors`` random 2-4 character words over 300 common characters) is
narrowed by :class:`funasr_nano.pipeline.hotwords.HotwordList` to ``--limit`` entries. Reports
recall (the planted word is among them), the baseline of exact string search in the read-out, how
many entries reach the prompt, and the time: building the index, and matching per utterance.

Usage:  python benchmarks/bench_hotwords.py [--distractors 10000] [--limit 10]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

PLANTED = ["滨海新区", "达摩院", "张家界", "西湖", "长城", "北京大学", "王小明", "李华", "深圳", "杭州", "成都", "重庆",
           "黄山", "泰山", "南京路", "天安门", "故宫", "长江", "黄河", "洞庭湖", "苏州", "桂林", "西安", "青岛",
           "厦门", "武汉", "刘德华", "周杰伦", "马云", "雷锋", "鲁迅", "孔子", "李白", "杜甫", "白居易", "苏轼",
           "诸葛亮", "曹操", "刘备", "关羽"]
TEMPLATES = ["我住在{}。", "{}很有名。", "我们去{}吧。", "他喜欢{}。"]
POOL = list("的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定"
            "行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外"
            "天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者"
            "最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根"
            "论运农指几九区强放决西被干做必战先回则任取据处理世车")


def main() -> None:
    import soundfile
    import torch

    from funasr_nano import load_model
    from funasr_nano.pipeline.hotwords import HotwordList
    from funasr_nano.training.synth import SynthConfig, synthesize_one, variation

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--distractors", type=int, default=10_000)
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--planted", type=int, default=len(PLANTED))
    args = parser.parse_args()
    torch.set_num_threads(2)

    rng = np.random.default_rng(0)
    distractors = ["".join(rng.choice(POOL, size=int(rng.integers(2, 5)))) for _ in range(args.distractors)]
    began = time.perf_counter()
    hotwords = HotwordList(distractors + PLANTED[: args.planted])
    build = time.perf_counter() - began

    model = load_model()  # the embedded demo model
    blank = model.tokenizer.pad_token_id
    config = SynthConfig()
    found = exact = total = 0
    sizes, times = [], []
    with tempfile.TemporaryDirectory() as folder:
        for index, planted in enumerate(PLANTED[: args.planted]):
            sentence = TEMPLATES[index % len(TEMPLATES)].format(planted)
            voice, speed, pitch = variation(config, index)
            path = os.path.join(folder, f"{index}.wav")
            synthesize_one(sentence, path, voice, speed, pitch)
            waveform = soundfile.read(path, dtype="float32")[0]
            with torch.inference_mode():
                ids = model.family.model.lm_head(model.audio_embeddings(waveform)).argmax(-1).tolist()
            kept = [t for i, t in enumerate(ids) if t != blank and (i == 0 or ids[i - 1] != t)]
            readout = model.tokenizer.decode(kept, skip_special_tokens=True)
            began = time.perf_counter()
            matches = hotwords.match(readout, args.limit)
            times.append(time.perf_counter() - began)
            sizes.append(len(matches))
            total += 1
            found += planted in matches
            exact += planted in readout
            print(f"{sentence}\tread out: {readout}\t{'found' if planted in matches else 'MISSED'}\t{matches[:5]}")
    print(f"\nhotwords: {len(hotwords)} ({args.planted} planted), index built in {build:.2f} s")
    print(f"recall@{args.limit} (pinyin match): {found}/{total} = {100 * found / total:.1f} %")
    print(f"baseline, exact string in the read-out: {exact}/{total} = {100 * exact / total:.1f} %")
    print(f"entries given to the prompt per utterance: mean {np.mean(sizes):.1f}, max {max(sizes)}")
    print(f"match time per utterance: median {1000 * np.median(times):.2f} ms, max {1000 * max(times):.2f} ms")


if __name__ == "__main__":
    main()
