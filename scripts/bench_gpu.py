"""GPU side of scripts/gpu_check.sh: a full-size random checkpoint, and the PyTorch anchor.

`make DIR`  writes Co-Instruct's full-size network (CLIP ViT-L/14 at 448, the 6-layer
            abstractor, LLaMA-2-7B with the modality-adaptive module; 8.2 B parameters) with
            random bf16 weights under our key names, drawn on the GPU: the real checkpoint cannot
            be downloaded, and the timings do not depend on the values.
`anchor RUST_JSON RUNS`  times transformers' CLIPVisionModel and LlamaForCausalLM at the same
            sizes, in bf16 on the same GPU, the way bench_calls times qrank (median of RUNS after
            two warm-ups, each run ending in a device synchronisation), and prints the ratios.
"""
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_model import config_json, random_state  # noqa: E402

VISION = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
              image_size=448, patch_size=14, layer_norm_eps=1e-6, hidden_act="quick_gelu")
ABSTRACTOR = dict(hidden_size=1024, intermediate_size=2816, num_hidden_layers=6, num_attention_heads=16,
                  num_learnable_queries=64, encoder_hidden_size=1024, grid_size=32, layer_norm_eps=1e-6)
LLM = dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
           num_attention_heads=32, num_key_value_heads=32, rms_norm_eps=1e-6, rope_theta=10000.0,
           max_position_embeddings=2048)


def make(out):
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(7)
    kw = dict(device="cuda", dtype=torch.bfloat16)
    state = random_state(VISION, ABSTRACTOR, LLM, lambda shape: torch.randn(shape, **kw),
                         lambda n: torch.ones(n, **kw), lambda n: torch.zeros(n, **kw))
    params = sum(t.numel() for t in state.values())
    save_file({k: v.cpu().contiguous() for k, v in state.items()}, str(out / "model.safetensors"))
    (out / "config.json").write_text(config_json(VISION, ABSTRACTOR, LLM))
    print(f"wrote {params / 1e9:.2f} B parameters to {out}")


def median_ms(runs, fn):
    """Median of `runs` timed runs after two warm-ups, each ending in a device synchronisation
    where there is a GPU."""
    fn()
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def time_llm(llm, ids, runs):
    """The prefill of `ids` (every position's logits) and one decoding step after it, in ms:
    the step is the difference of a prefill with 9 steps and one with 1, over 8."""
    def prefill_and_steps(steps):
        out = llm(input_ids=ids, use_cache=True)
        cache = out.past_key_values
        for _ in range(steps):
            nxt = out.logits[:, -1:].argmax(-1)
            out = llm(input_ids=nxt, past_key_values=cache, use_cache=True)
            cache = out.past_key_values

    prefill_ms = median_ms(runs, lambda: llm(input_ids=ids, use_cache=False))
    one = median_ms(runs, lambda: prefill_and_steps(1))
    nine = median_ms(runs, lambda: prefill_and_steps(9))
    return prefill_ms, (nine - one) / 8


def anchor(rust_json, runs):
    import transformers
    from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM

    rust = json.loads(Path(rust_json).read_text())
    runs = int(runs)
    torch.manual_seed(0)
    torch.set_grad_enabled(False)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        vision = CLIPVisionModel(CLIPVisionConfig(**VISION)).eval()
        pixels = torch.randn(4, 3, 448, 448)
        vision_ms = median_ms(runs, lambda: vision(pixel_values=pixels))
        vision_attn = vision.config._attn_implementation
        del vision
        llm = LlamaForCausalLM(LlamaConfig(**LLM)).eval()
        ids = torch.randint(3, LLM["vocab_size"], (1, rust["llm_seq_len"]))
        prefill_ms, step_ms = time_llm(llm, ids, runs)
        llm_attn = llm.config._attn_implementation
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, transformers {transformers.__version__}; "
          f"bf16, median of {runs} runs after two warm-ups")
    rows = [
        ("vision tower, 4 images @448", rust["vision_ms_batch4"], vision_ms, f"CLIPVisionModel ({vision_attn})"),
        (f"LLM prefill, {rust['llm_seq_len']} tokens", rust["llm_prefill_ms"], prefill_ms,
         f"LlamaForCausalLM ({llm_attn})"),
        ("LLM decoding step (KV cache)", rust["decode_step_ms"], step_ms, f"LlamaForCausalLM ({llm_attn})"),
    ]
    print("| stage | qrank (candle) ms | PyTorch ms | anchor | qrank speed vs PyTorch |")
    print("|---|---|---|---|---|")
    for what, ours, theirs, name in rows:
        print(f"| {what} | {ours:.2f} | {theirs:.2f} | {name} | {theirs / ours:.2f}x |")
    print(f"| abstractor, 4 images | {rust['abstractor_ms_batch4']:.2f} | | no transformers equivalent | |")
    print(f"| full-ranking call of 4, new images | {rust['call_cold_ms']:.2f} | | | |")
    print(f"| full-ranking call of 4, cached images | {rust['call_warm_ms']:.2f} | | | |")


if __name__ == "__main__":
    {"make": make, "anchor": anchor}[sys.argv[1]](*sys.argv[2:])
