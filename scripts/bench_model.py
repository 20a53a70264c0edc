"""Side-by-side CPU timings: qrank's candle Co-Instruct vs Hugging Face transformers and Pillow.

`make DIR`   writes a random-weight mid-size checkpoint (our key names, config.json layout) and
             a few JPEGs of photo sizes.
`run DIR RUST_JSON ITERS`  times transformers' CLIPVisionModel and LlamaForCausalLM at the same
             sizes with random weights, and Pillow preprocessing on the same JPEGs, then prints
             the ratios against the timings the Rust example wrote.
Driven by scripts/bench_model.sh.
"""
import json
import sys
import time
from pathlib import Path

import numpy as np

VISION = dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=6, num_attention_heads=8,
              image_size=448, patch_size=14, layer_norm_eps=1e-6, hidden_act="quick_gelu")
ABSTRACTOR = dict(hidden_size=512, intermediate_size=1408, num_hidden_layers=2, num_attention_heads=8,
                  num_learnable_queries=64, encoder_hidden_size=512, grid_size=32, layer_norm_eps=1e-6)
LLM = dict(vocab_size=32000, hidden_size=1024, intermediate_size=2816, num_hidden_layers=8,
           num_attention_heads=16, num_key_value_heads=16, rms_norm_eps=1e-6, rope_theta=10000.0,
           max_position_embeddings=2048)
JPEG_SIZES = [(4032, 3024), (1920, 1080), (1024, 768), (640, 480)]


def random_state(vision, abstractor, llm, normal, ones, zeros):
    """Every tensor of the checkpoint, named as in q-future/co-instruct, at the given sizes.

    `normal(shape)` draws standard-normal values; `ones(n)` and `zeros(n)` fill norms. NumPy
    arrays on the CPU here, bf16 tensors on the GPU in bench_gpu.py.
    """
    v, a, l = vision, abstractor, llm
    hv, ha, hl = v["hidden_size"], a["hidden_size"], l["hidden_size"]
    n_tok = (v["image_size"] // v["patch_size"]) ** 2 + 1
    t = {}

    def mat(name, out_dim, in_dim, bias=True):
        t[name + ".weight"] = normal((out_dim, in_dim)) / float(np.sqrt(in_dim))
        if bias:
            t[name + ".bias"] = 0.02 * normal((out_dim,))

    def norm(name, dim, bias=True):
        t[name + ".weight"] = ones(dim)
        if bias:
            t[name + ".bias"] = zeros(dim)

    p = "model.vision_model."
    t[p + "embeddings.cls_token"] = normal((1, 1, hv))
    t[p + "embeddings.position_embedding"] = 0.5 * normal((1, n_tok, hv))
    t[p + "embeddings.patch_embed.weight"] = normal(
        (hv, 3, v["patch_size"], v["patch_size"])) / float(np.sqrt(3 * v["patch_size"] ** 2))
    norm(p + "embeddings.pre_layernorm", hv)
    for i in range(v["num_hidden_layers"]):
        q = f"{p}encoder.layers.{i}."
        norm(q + "input_layernorm", hv)
        norm(q + "post_attention_layernorm", hv)
        mat(q + "self_attn.query_key_value", 3 * hv, hv)
        mat(q + "self_attn.dense", hv, hv)
        mat(q + "mlp.fc1", v["intermediate_size"], hv)
        mat(q + "mlp.fc2", hv, v["intermediate_size"])
    norm(p + "post_layernorm", hv)
    p = "model.visual_abstractor."
    t[p + "query_embeds"] = normal((1, a["num_learnable_queries"], ha))
    t[p + "vit_eos"] = normal((1, 1, hl))
    mat(p + "visual_fc", hl, ha)
    for i in range(a["num_hidden_layers"]):
        q = f"{p}encoder.layers.{i}.crossattention."
        norm(q + "norm1", ha)
        norm(q + "normk", ha)
        for n in ("query", "key", "value"):
            mat(q + "attention." + n, ha, ha)
        mat(q + "output.out_proj", ha, ha)
        norm(q + "output.norm2", ha)
        mat(q + "output.mlp.w1", a["intermediate_size"], ha)
        mat(q + "output.mlp.w3", a["intermediate_size"], ha)
        mat(q + "output.mlp.w2", ha, a["intermediate_size"])
        norm(q + "output.mlp.ffn_ln", a["intermediate_size"])
    t["model.embed_tokens.weight"] = normal((l["vocab_size"], hl))
    for i in range(l["num_hidden_layers"]):
        q = f"model.layers.{i}."
        mat(q + "self_attn.q_proj", hl, hl, bias=False)
        mat(q + "self_attn.o_proj", hl, hl, bias=False)
        for w in (0, 1):
            mat(f"{q}self_attn.k_proj.multiway.{w}", hl, hl, bias=False)
            mat(f"{q}self_attn.v_proj.multiway.{w}", hl, hl, bias=False)
            norm(f"{q}input_layernorm.multiway.{w}", hl, bias=False)
            norm(f"{q}post_attention_layernorm.multiway.{w}", hl, bias=False)
        mat(q + "mlp.gate_proj", l["intermediate_size"], hl, bias=False)
        mat(q + "mlp.up_proj", l["intermediate_size"], hl, bias=False)
        mat(q + "mlp.down_proj", hl, l["intermediate_size"], bias=False)
    norm("model.norm", hl, bias=False)
    mat("lm_head", l["vocab_size"], hl, bias=False)
    return t


def config_json(vision, abstractor, llm):
    """config.json in the checkpoint's layout."""
    config = dict(llm, architectures=["MPLUGOwl2LlamaForCausalLM"], model_type="mplug_owl2",
                  visual_config=dict(visual_model=vision, visual_abstractor=abstractor))
    return json.dumps(config, indent=2)


def make(out):
    from PIL import Image
    from safetensors.numpy import save_file

    out = Path(out)
    (out / "ckpt").mkdir(parents=True, exist_ok=True)
    (out / "jpegs").mkdir(exist_ok=True)
    rng = np.random.default_rng(7)
    state = random_state(VISION, ABSTRACTOR, LLM, lambda shape: rng.standard_normal(shape, dtype=np.float32),
                         lambda n: np.ones(n, np.float32), lambda n: np.zeros(n, np.float32))
    save_file(state, str(out / "ckpt" / "model.safetensors"))
    (out / "ckpt" / "config.json").write_text(config_json(VISION, ABSTRACTOR, LLM))
    for w, h in JPEG_SIZES:
        y, x = np.mgrid[0:h, 0:w]
        base = np.stack([(x * 255 // w), (y * 255 // h), ((x + y) % 256)], -1).astype(np.float32)
        noisy = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(out / "jpegs" / f"{w}x{h}.jpg", quality=90)


def best_ms(iters, fn):
    """Fastest of `iters` runs after a warm-up: the least disturbed by other load."""
    fn()
    runs = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - start) * 1e3)
    return min(runs)


def run(out, rust_json, iters):
    import torch
    from PIL import Image
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM

    out, iters = Path(out), int(iters)
    rust = json.loads(Path(rust_json).read_text())
    torch.manual_seed(0)
    torch.set_grad_enabled(False)
    threads = torch.get_num_threads()

    mean = (0.48145466, 0.4578275, 0.40821073)
    std = (0.26862954, 0.26130258, 0.27577711)
    processor = CLIPImageProcessor(size=448, crop_size=448, resample=3, image_mean=list(mean), image_std=list(std))
    images = [Image.open(p).convert("RGB") for p in sorted((out / "jpegs").glob("*.jpg"))]

    def expand2square(img):
        w, h = img.size
        s = max(w, h)
        canvas = Image.new(img.mode, (s, s), tuple(int(x * 255) for x in mean))
        canvas.paste(img, ((s - w) // 2, (s - h) // 2))
        return canvas

    def pillow_numpy():
        for img in images:
            sq = expand2square(img).resize((448, 448), Image.BICUBIC)
            x = np.asarray(sq, dtype=np.float32) / 255.0
            ((x - np.array(mean, np.float32)) / np.array(std, np.float32)).transpose(2, 0, 1).copy()

    def clip_processor():
        for img in images:
            processor.preprocess(expand2square(img), return_tensors="pt")

    pillow_ms = best_ms(iters, pillow_numpy) / len(images)
    processor_ms = best_ms(iters, clip_processor) / len(images)

    vcfg = CLIPVisionConfig(**VISION)
    pixels = torch.randn(4, 3, 448, 448)
    vision = {}
    for attn in ("eager", "sdpa"):
        model = CLIPVisionModel(vcfg).eval() if attn == "eager" else CLIPVisionModel._from_config(
            vcfg, attn_implementation="sdpa").eval()
        vision[attn] = best_ms(iters, lambda: model(pixel_values=pixels))
    lcfg = LlamaConfig(**LLM)
    ids = torch.randint(3, LLM["vocab_size"], (1, rust["llm_seq_len"]))
    llm = {}
    for attn in ("eager", "sdpa"):
        model = LlamaForCausalLM._from_config(lcfg, attn_implementation=attn).eval()
        llm[attn] = best_ms(iters, lambda: model(input_ids=ids, use_cache=False))

    rows = [
        ("preprocess, ms/image (decoded RGB -> pixels)", rust["preprocess_ms_per_image"],
         [("Pillow+numpy", pillow_ms), ("CLIPImageProcessor", processor_ms)]),
        ("vision tower, 4 images @448, ms", rust["vision_ms_batch4"],
         [("CLIPVisionModel eager", vision["eager"]), ("CLIPVisionModel sdpa", vision["sdpa"])]),
        (f"LLM prefill, {rust['llm_seq_len']} tokens, ms", rust["llm_prefill_ms"],
         [("LlamaForCausalLM eager", llm["eager"]), ("LlamaForCausalLM sdpa", llm["sdpa"])]),
    ]
    import transformers
    print(f"torch {torch.__version__} ({threads} threads), transformers {transformers.__version__}, "
          f"Pillow {Image.__version__}; best of {iters} runs")
    for what, ours, theirs in rows:
        print(f"{what}: qrank {ours:.2f}")
        for name, t in theirs:
            print(f"    {name}: {t:.2f}  -> qrank is {t / ours:.2f}x the speed")
    print(f"abstractor, 4 images, ms: qrank {rust['abstractor_ms_batch4']:.2f} (no transformers equivalent)")


if __name__ == "__main__":
    {"make": make, "run": run}[sys.argv[1]](*sys.argv[2:])
