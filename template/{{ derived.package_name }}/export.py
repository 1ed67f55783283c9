"""Export to a Hugging Face `transformers` folder, and import one back.

`export --format hf OUT` writes what `AutoModelForCausalLM.from_pretrained(OUT)` loads, and what vLLM serves:
config.json, model.safetensors, generation_config.json, tokenizer.json with tokenizer_config.json (the
end-of-text token as bos, eos and pad; for a fine-tuned model with the chat tokens, chat_format.CHAT_TEMPLATE as
its `chat_template`), and a model card (README.md, see model_card.py).

Which class: the GPT-2 style model is `GPT2LMHeadModel`, the Llama style `LlamaForCausalLM`, and the Llama style
with QK-norm `Qwen3ForCausalLM` (Qwen3 is Llama plus an RMSNorm on each head's query and key before RoPE). The
weights are the same numbers under other names; two conventions differ:
- GPT-2's Hugging Face layers are `Conv1D`, which store each matrix transposed (in, out) against nn.Linear;
- both use the same half-split RoPE pairing (i, i + D/2) as model.py (GPT-NeoX style), so q and k need no
  permutation (llama.cpp's GGUF does need one).
A model no Hugging Face class expresses (learned positions, LayerNorm or GELU in a Llama block) is an error.

`import-hf DIR` reads those three classes from a local folder (nothing is downloaded) into our GPT and writes a
checkpoint that `generate`, `quantize` and `export` read. The folder's tokenizer.json must be one this project's
BPETokenizer reads (byte-level BPE, end-of-text token last), as exports of this project are.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError

from .atomic import replace_dir
from .chat_format import CHAT_TEMPLATE, END
from .config import ARCHITECTURE
from .model import GPT, GPTConfig

EPS = 1e-5  # model.py's LayerNorm and RMSNorm epsilon
ROPE_BASE = 10000.0  # model.py's rope_tables base
EOT = "<|endoftext|>"


def _transformers() -> Any:
    """The transformers module; a one-line ValueError when it is not installed."""
    try:
        import transformers
    except ImportError:
        raise ValueError("this needs transformers: pip install -e '.[export]'") from None
    return transformers


def hf_architecture(config: GPTConfig) -> str:
    """The transformers class that computes what `config` does; a one-line ValueError when none does."""
    if ARCHITECTURE == "gpt2":
        return "GPT2LMHeadModel"
    c = dataclasses.asdict(config)
    for switch, supported in (("norm", "rmsnorm"), ("activation", "swiglu"), ("positions", "rope")):
        if c.get(switch, supported) != supported:
            raise ValueError(f"no Hugging Face architecture has {switch}={c[switch]!r} in a Llama block "
                             f"(Llama and Qwen3 use {supported}): export a model trained with {switch}={supported!r}")
    return "Qwen3ForCausalLM" if c.get("qk_norm") else "LlamaForCausalLM"


def hf_config(config: GPTConfig, eot_id: int) -> Any:
    """The transformers config object of the class hf_architecture(config) names."""
    transformers = _transformers()
    arch, c = hf_architecture(config), config
    common = dict(vocab_size=c.vocab_size, tie_word_embeddings=c.tie_embeddings, bos_token_id=eot_id,
                  eos_token_id=eot_id, pad_token_id=eot_id, architectures=[arch])
    if arch == "GPT2LMHeadModel":
        return transformers.GPT2Config(n_positions=c.block_size, n_embd=c.n_embd, n_layer=c.n_layer, n_head=c.n_head,
                                       n_inner=c.ffn_hidden, activation_function="gelu_new",  # gelu, tanh form
                                       layer_norm_epsilon=EPS, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                       **common)
    cls = transformers.Qwen3Config if arch == "Qwen3ForCausalLM" else transformers.LlamaConfig
    return cls(hidden_size=c.n_embd, intermediate_size=c.ffn_hidden, num_hidden_layers=c.n_layer,
               num_attention_heads=c.n_head, num_key_value_heads=c.n_kv_head, head_dim=c.n_embd // c.n_head,
               max_position_embeddings=c.block_size, rms_norm_eps=EPS, hidden_act="silu", attention_bias=False,
               rope_parameters={"rope_type": "default", "rope_theta": ROPE_BASE}, **common)


def _renames(config: GPTConfig) -> list[tuple[str, str]]:
    """(our name, Hugging Face name) of every tensor; `{i}` stands for the layer number."""
    if ARCHITECTURE == "gpt2":
        layer = [("ln_1", "ln_1"), ("attn.qkv", "attn.c_attn"), ("attn.proj", "attn.c_proj"), ("ln_2", "ln_2"),
                 ("mlp.fc", "mlp.c_fc"), ("mlp.proj", "mlp.c_proj")]
        pairs = [("tok_emb.weight", "transformer.wte.weight"), ("pos_emb.weight", "transformer.wpe.weight"),
                 ("ln_f.weight", "transformer.ln_f.weight"), ("ln_f.bias", "transformer.ln_f.bias")]
        pairs += [("blocks.{i}." + f"{a}.{p}", "transformer.h.{i}." + f"{b}.{p}")
                  for a, b in layer for p in ("weight", "bias")]
    else:
        layer = [("norm_1", "input_layernorm"), ("attn.q", "self_attn.q_proj"), ("attn.k", "self_attn.k_proj"),
                 ("attn.v", "self_attn.v_proj"), ("attn.proj", "self_attn.o_proj"),
                 ("norm_2", "post_attention_layernorm"), ("mlp.gate", "mlp.gate_proj"), ("mlp.up", "mlp.up_proj"),
                 ("mlp.proj", "mlp.down_proj")]
        if dataclasses.asdict(config).get("qk_norm"):
            layer += [("attn.q_norm", "self_attn.q_norm"), ("attn.k_norm", "self_attn.k_norm")]
        pairs = [("tok_emb.weight", "model.embed_tokens.weight"), ("norm_f.weight", "model.norm.weight")]
        pairs += [("blocks.{i}." + f"{a}.weight", "model.layers.{i}." + f"{b}.weight") for a, b in layer]
    if not config.tie_embeddings:
        pairs.append(("lm_head.weight", "lm_head.weight"))
    return [(ours.format(i=i), theirs.format(i=i)) for i in range(config.n_layer) for ours, theirs in pairs
            if "{i}" in ours or i == 0]


def hf_module_names(config: GPTConfig) -> dict[str, str]:
    """Our module name -> the Hugging Face one, per weight matrix (blocks.0.attn.q -> model.layers.0.self_attn.q_proj):
    the names PEFT's adapter files use."""
    return {a.removesuffix(".weight"): b.removesuffix(".weight") for a, b in _renames(config) if a.endswith(".weight")}


def _transposed(hf_name: str) -> bool:
    """GPT-2's Conv1D matrices are stored (in, out): transpose them on the way in and out."""
    return ARCHITECTURE == "gpt2" and hf_name.endswith(".weight") and any(
        f".{m}." in hf_name for m in ("c_attn", "c_proj", "c_fc"))


def to_hf_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """Our weights under Hugging Face names (fp32, contiguous)."""
    ours = model.state_dict()
    out = {}
    for a, b in _renames(model.config):
        t = ours[a].detach().float()
        out[b] = (t.t() if _transposed(b) else t).contiguous()
    return out


def from_hf_state_dict(config: GPTConfig, hf: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of to_hf_state_dict; a missing tensor is a one-line ValueError."""
    out = {}
    for a, b in _renames(config):
        if b not in hf:
            raise ValueError(f"the Hugging Face weights have no {b}")
        t = hf[b].detach().float()
        out[a] = (t.t() if _transposed(b) else t).contiguous()
    return out


def to_hf_model(model: GPT, eot_id: int) -> Any:
    """A transformers model (fp32, eval mode) holding `model`'s weights."""
    transformers = _transformers()
    hf = transformers.AutoModelForCausalLM.from_config(hf_config(model.config, eot_id), dtype=torch.float32)
    missing, unexpected = hf.load_state_dict(to_hf_state_dict(model), strict=False)
    if unexpected or set(missing) - {"lm_head.weight"}:  # a tied head is the embedding, not a tensor of its own
        raise ValueError(f"weights do not fit {type(hf).__name__}: missing {missing}, unexpected {unexpected}")
    return hf.eval()


def export_hf(ckpt: Path, out: Path) -> Path:
    """Write the Hugging Face folder of checkpoint `ckpt` to `out` (new or empty); returns out. The folder is built
    beside `out` and renamed into place, so a failure leaves nothing behind."""
    from .generate import load_model

    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file: choose a new folder")
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} exists and is not empty: choose a new folder")
    model, tok, ck = load_model(ckpt, "cpu")
    if not ck:
        raise ValueError(f"{ckpt} is quantized: export the run's ckpt.pt (the full-precision weights)")
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _write_hf_folder(tmp, ckpt, ck, model, tok)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, out)
    return out


def _write_hf_folder(out: Path, ckpt: Path, ck: dict, model: GPT, tok: Any) -> None:
    from .model_card import write_model_card

    hf = to_hf_model(model, tok.eot_id)
    transformers = _transformers()
    hf.save_pretrained(out)
    tok.save(out / "tokenizer.json")
    (out / "merges.txt").unlink()  # tokenizer.json holds the merges; keep the folder what transformers expects
    chat_template = CHAT_TEMPLATE if END in tok.special else None  # a fine-tuned model knows the chat tokens
    fast = transformers.PreTrainedTokenizerFast(tokenizer_file=str(out / "tokenizer.json"), bos_token=EOT,
                                                eos_token=EOT, pad_token=EOT, model_max_length=model.config.block_size,
                                                chat_template=chat_template)
    fast.save_pretrained(out, save_jinja_files=False)  # the template inside tokenizer_config.json, as vLLM reads it
    write_model_card(out, ckpt, ck, model, type(hf).__name__)


def import_hf(src: Path, out: Path) -> Path:
    """Load the transformers folder `src` into our GPT and write out/ckpt.pt + model.safetensors + tokenizer.json."""
    from .checkpoint import CHECKPOINT, TOKENIZER, save_checkpoint
    from .tokenizer import BPETokenizer

    if not (src / "config.json").is_file():
        raise FileNotFoundError(f"{src} has no config.json: not a Hugging Face model folder")
    if (out / CHECKPOINT).exists():
        raise ValueError(f"{out / CHECKPOINT} exists: choose a new --out")
    try:
        kind = json.loads((src / "config.json").read_text()).get("model_type")
    except (OSError, ValueError, AttributeError) as e:  # AttributeError: JSON, but not an object
        raise ValueError(f"{src / 'config.json'} is not a JSON object: {e}") from None
    check_model_type(kind)  # before transformers loads (and talks about) a model of another kind
    transformers = _transformers()
    transformers.utils.logging.disable_progress_bar()  # errors stay one line; a success needs no bar either
    try:
        tok = BPETokenizer.load(src / TOKENIZER)
        hf = transformers.AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as e:  # missing, truncated,
        # malformed or lying files, in the words of transformers, safetensors or tokenizer.py
        raise ValueError(f"cannot import {src}: {type(e).__name__}: {str(e).strip().splitlines()[0][:300]}") from None
    config = gpt_config_from_hf(hf.config)
    model = GPT(config)
    weights = from_hf_state_dict(config, hf.state_dict())
    if config.tie_embeddings:
        weights["lm_head.weight"] = weights["tok_emb.weight"]
    model.load_state_dict(weights, strict=True)
    out.mkdir(parents=True, exist_ok=True)
    tok.save(out / TOKENIZER)
    save_checkpoint(out / CHECKPOINT, model, {
        "step": 0, "model_config": dataclasses.asdict(config), "optimizer": None, "rng": None,
        "imported_from": str(src), "config": None, "val_loss": None,
        "tokenizer": {"file": TOKENIZER, "source": str(out / TOKENIZER), "meta": {"vocab_size": tok.vocab_size}},
    })
    return out / CHECKPOINT


def check_model_type(kind: Any) -> None:
    """A one-line ValueError unless `kind` (config.json's model_type) is one this project's model reads."""
    wanted = {"gpt2": ("gpt2",), "llama": ("llama", "qwen3")}[ARCHITECTURE]
    if kind not in wanted:
        raise ValueError(f"this project's model is {ARCHITECTURE}-style and reads {' or '.join(wanted)} folders, "
                         f"not {kind}")


def gpt_config_from_hf(hf: Any) -> GPTConfig:
    """Our GPTConfig for a transformers config of the three classes; a one-line ValueError for anything else."""
    kind = hf.model_type
    check_model_type(kind)
    if kind == "gpt2":
        if hf.activation_function != "gelu_new" or abs(hf.layer_norm_epsilon - EPS) > 1e-12:
            raise ValueError("only GPT-2 with gelu_new and layer_norm_epsilon 1e-5 matches model.py")
        return GPTConfig(vocab_size=hf.vocab_size, block_size=hf.n_positions, n_layer=hf.n_layer, n_head=hf.n_head,
                         n_kv_head=hf.n_head, n_embd=hf.n_embd, ffn_hidden=hf.n_inner or 4 * hf.n_embd,
                         tie_embeddings=hf.tie_word_embeddings)
    rope = getattr(hf, "rope_parameters", None) or {}
    head_dim = getattr(hf, "head_dim", None) or hf.hidden_size // hf.num_attention_heads
    checks = {"rope_type default": rope.get("rope_type", "default") == "default",
              f"rope_theta {ROPE_BASE:g}": float(rope.get("rope_theta", ROPE_BASE)) == ROPE_BASE,
              f"rms_norm_eps {EPS:g}": abs(hf.rms_norm_eps - EPS) < 1e-12, "hidden_act silu": hf.hidden_act == "silu",
              "no attention or MLP biases": not hf.attention_bias and not getattr(hf, "mlp_bias", False),
              "head_dim = hidden_size / heads": head_dim * hf.num_attention_heads == hf.hidden_size}
    failed = [name for name, ok in checks.items() if not ok]
    if failed:
        raise ValueError(f"model.py cannot express this {kind} model: it needs {', '.join(failed)}")
    extra = {}
    if "qk_norm" in {f.name for f in dataclasses.fields(GPTConfig)}:
        extra["qk_norm"] = kind == "qwen3"
    elif kind == "qwen3":
        raise ValueError("this project's model has no QK-norm: it cannot read a qwen3 folder")
    return GPTConfig(vocab_size=hf.vocab_size, block_size=hf.max_position_embeddings, n_layer=hf.num_hidden_layers,
                     n_head=hf.num_attention_heads, n_kv_head=hf.num_key_value_heads, n_embd=hf.hidden_size,
                     ffn_hidden=hf.intermediate_size, tie_embeddings=hf.tie_word_embeddings, **extra)
