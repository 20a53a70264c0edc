"""Writes the golden tiny checkpoint's weights as PyTorch shards, the other layout the hub uses
(`pytorch_model-0000N-of-00002.bin` and `pytorch_model.bin.index.json`), for the loader test
`pytorch_shards_load_as_the_safetensors_do` (engine/tests/model_golden.rs).

Usage: python scripts/make_pickle_fixture.py engine/tests/golden/coinstruct-tiny/weights.safetensors \
           engine/tests/data/coinstruct-tiny-pytorch
Needs torch and safetensors. The values are the golden f32 weights unchanged, so the test can ask
for the reference's logits at the golden tolerance.
"""
import json
import os
import sys

import torch
from safetensors.torch import load_file


def main(weights_path: str, out_dir: str) -> None:
    weights = load_file(weights_path)
    names = list(weights)
    # Two shards of about equal size, tensors in the file's order, as save_pretrained cuts them.
    total = sum(t.numel() * t.element_size() for t in weights.values())
    shards, current, size = [], {}, 0
    for name in names:
        current[name] = weights[name].clone()
        size += weights[name].numel() * weights[name].element_size()
        if not shards and size >= total / 2:
            shards.append(current)
            current = {}
    shards.append(current)
    os.makedirs(out_dir, exist_ok=True)
    weight_map = {}
    for i, shard in enumerate(shards, start=1):
        file = f"pytorch_model-{i:05d}-of-{len(shards):05d}.bin"
        torch.save(shard, os.path.join(out_dir, file))
        weight_map.update({name: file for name in shard})
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    with open(os.path.join(out_dir, "pytorch_model.bin.index.json"), "w") as f:
        json.dump(index, f, indent=2, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
