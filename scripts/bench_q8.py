"""8-bit weights on the CPU (`--precision q8`) beside f32, and PyTorch beside both.

The real checkpoint does not fit this machine in f32 (33 GB), so the language model is built at
LLaMA-2-7B's width (hidden 4096, MLP 11008, 32 heads) with LAYERS of its 32 decoder layers, and
the mid-size vision tower and abstractor of bench_model.py; a decoder layer's time and memory
scale with the count. With all 32 layers the vision tower and abstractor are full-size too.

`make DIR [LAYERS]`  writes that checkpoint (random weights, our key names, bf16 safetensors in
             shards with an index, as the real checkpoint is laid out). `make DIR 32` is the
             full-size language model (16 GB), which only q8 loads on a machine under 40 GB.
`anchor F32_JSON Q8_JSON RUNS`  times transformers' LlamaForCausalLM at the same sizes in f32 and
             with PyTorch's dynamic int8 quantization of its linear layers (`quantize_dynamic`,
             int8 weights with one scale a tensor, activations quantized per call), the same way
             bench_calls times qrank (median of RUNS after two warm-ups), and prints the table.
Driven by scripts/bench_q8.sh.
"""
import json
import sys
from pathlib import Path

import numpy as np

import bench_gpu
from bench_gpu import time_llm
from bench_model import ABSTRACTOR, VISION, config_json, random_state

LLAMA_7B = dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_attention_heads=32,
                num_key_value_heads=32, rms_norm_eps=1e-5, rope_theta=10000.0, max_position_embeddings=2048)


def llm(layers):
    return dict(LLAMA_7B, num_hidden_layers=int(layers))


class Lazy:
    """A standard-normal tensor to draw when it is written: its shape and scale. The full-size
    state (16 GB in bf16) is never held at once."""

    def __init__(self, shape, scale=1.0):
        self.shape, self.scale = tuple(shape), scale

    def __truediv__(self, by):
        return Lazy(self.shape, self.scale / by)

    def __rmul__(self, by):
        return Lazy(self.shape, self.scale * by)


def make(out, layers=4, shard_bytes=2 << 30):
    """The checkpoint in bf16 (as the real one is), in shards with an index, as on the hub."""
    import torch
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(7)
    # All 32 layers: the whole network at full size, as bench_gpu.py draws it on a GPU.
    vision, abstractor = (bench_gpu.VISION, bench_gpu.ABSTRACTOR) if int(layers) == 32 else (VISION, ABSTRACTOR)
    state = random_state(vision, abstractor, llm(layers), Lazy, np.ones, np.zeros)
    shard, size, weight_map = {}, 0, {}

    def flush():
        nonlocal shard, size
        name = f"model-{len(set(weight_map.values())) + 1:05d}.safetensors"
        save_file(shard, str(out / name))
        weight_map.update({k: name for k in shard})
        shard, size = {}, 0

    for key, value in state.items():
        if isinstance(value, Lazy):
            tensor = (torch.randn(value.shape) * value.scale).to(torch.bfloat16)
        else:
            tensor = torch.from_numpy(np.asarray(value, np.float32)).to(torch.bfloat16)
        shard[key] = tensor
        size += tensor.numel() * 2
        if size >= shard_bytes:
            flush()
    if shard:
        flush()
    (out / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    (out / "config.json").write_text(config_json(vision, abstractor, llm(layers)))


def anchor(f32_json, q8_json, runs):
    import torch
    import transformers
    from torch.ao.quantization import quantize_dynamic
    from transformers import LlamaConfig, LlamaForCausalLM

    ours = {name: json.loads(Path(p).read_text()) for name, p in (("f32", f32_json), ("q8", q8_json))}
    runs = int(runs)
    torch.manual_seed(0)
    torch.set_grad_enabled(False)
    layers = ours["f32"]["llm_layers"]
    seq_len = ours["f32"]["llm_seq_len"]
    model = LlamaForCausalLM._from_config(LlamaConfig(**llm(layers)), attn_implementation="sdpa").eval()
    ids = torch.randint(3, LLAMA_7B["vocab_size"], (1, seq_len))
    torch_f32 = time_llm(model, ids, runs)
    model = quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    torch_int8 = time_llm(model, ids, runs)
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads, {torch.backends.quantized.engine}), "
          f"transformers {transformers.__version__}; LLaMA-7B width, {layers} of 32 decoder layers; "
          f"median of {runs} runs after two warm-ups")
    print("| stage | qrank f32 | qrank q8 | q8 vs f32 | PyTorch f32 | PyTorch int8 (dynamic) | q8 vs PyTorch int8 |")
    print("|---|---|---|---|---|---|---|")
    rows = [
        (f"LLM prefill, {seq_len} tokens", "llm_prefill_ms", torch_f32[0], torch_int8[0]),
        ("LLM decoding step (KV cache)", "decode_step_ms", torch_f32[1], torch_int8[1]),
    ]
    for what, key, tf, ti in rows:
        f, q = ours["f32"][key], ours["q8"][key]
        print(f"| {what} | {f:.1f} ms | {q:.1f} ms | {f / q:.2f}x | {tf:.1f} ms | {ti:.1f} ms | {ti / q:.2f}x |")
    for what, key in (("full-ranking call of 4, new images", "call_cold_ms"),
                      ("full-ranking call of 4, cached images", "call_warm_ms")):
        f, q = ours["f32"][key], ours["q8"][key]
        print(f"| {what} | {f:.0f} ms | {q:.0f} ms | {f / q:.2f}x | | | |")
    f, q = ours["f32"]["load_s"], ours["q8"]["load_s"]
    print(f"| load | {f:.1f} s | {q:.1f} s | {f / q:.2f}x | | | |")
    for what, key in (("memory held once loaded (RssAnon)", "loaded_rss_anon_mib"),
                      ("memory held after the calls", "rss_anon_mib")):
        f, q = ours["f32"][key], ours["q8"][key]
        print(f"| {what} | {f:.0f} MiB | {q:.0f} MiB | {q / f:.2f} of it | | | |")


if __name__ == "__main__":
    {"make": make, "anchor": anchor}[sys.argv[1]](*sys.argv[2:])
