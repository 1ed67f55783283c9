"""The model card (README.md) that `export` writes beside the weights (Mitchell et al., 2019, "Model Cards for
Model Reporting"): what the model is, what it was trained on, how well it does, and what it is for."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .model import GPT
from .tracking import read_metrics

INTENDED_USE = (
    "A small language model trained from scratch for learning and experiments: studying training, "
    "tokenization, scaling and quantization, and as a starting point for fine-tuning. It continues text in the "
    "style of its training data. It is not instruction-tuned, not evaluated for safety, and states falsehoods "
    "fluently: do not use it for decisions about people, for advice, or as a source of facts."
)


def _manifest(ck: dict[str, Any]) -> dict[str, Any] | None:
    """The data manifest of the checkpoint's prepared data, if it is still on disk."""
    path = Path(ck["tokenizer"]["source"]).with_name("manifest.json")
    return json.loads(path.read_text()) if path.is_file() else None


def _data_lines(ck: dict[str, Any]) -> list[str]:
    manifest = _manifest(ck)
    lines = [f"- manifest sha256: `{ck.get('data_manifest_sha256') or 'not recorded'}`"]
    if manifest is None:
        return lines + ["- the manifest file is not on this machine any more; the hash above identifies it"]
    for s in manifest["sources"]:
        where = s.get("name") or s.get("path") or "built in"
        lines.append(f"- source `{s['kind']}` ({where}): licence {s.get('licence') or 'not declared'}, "
                     f"{s['documents']:,} documents, {s['bytes']:,} bytes")
    pii = manifest.get("filters", {}).get("pii", {})
    lines.append(f"- personal data: mode `{pii.get('mode', 'unknown')}`, {pii.get('documents_with_pii', 0):,} "
                 f"documents with matches, {pii.get('documents_dropped', 0):,} dropped")
    if manifest.get("tokens"):
        lines.append(f"- {manifest['tokens']:,} tokens after cleaning and deduplication")
    return lines


def _evaluation_lines(ckpt: Path, ck: dict[str, Any]) -> list[str]:
    metrics = ckpt.parent / "metrics.jsonl"
    evals = [r for r in read_metrics(metrics) if "val_bpb" in r] if metrics.is_file() else []
    if evals:
        last = evals[-1]
        return [f"- validation loss {last['val_loss']:.4f} nats/token (perplexity {math.exp(last['val_loss']):.2f}), "
                f"{last['val_bpb']:.4f} bits per byte, at step {last['step']:,} on the held-out split"]
    if ck.get("val_loss") is not None:
        return [f"- validation loss {ck['val_loss']:.4f} nats/token (perplexity {math.exp(ck['val_loss']):.2f})"]
    return ["- no evaluation recorded with this checkpoint"]


def write_model_card(out: Path, ckpt: Path, ck: dict[str, Any], model: GPT, hf_class: str) -> Path:
    """Write out/README.md for the export of checkpoint `ckpt` (its state `ck`) as `hf_class`."""
    c = model.config
    train = (ck.get("config") or {}).get("train", {})
    step = int(ck.get("step", 0))
    tokens = f"{step * train['batch_tokens']:,} ({step:,} steps of {train['batch_tokens']:,})" if train else "unknown"
    heads = f"{c.n_head} heads" + (f" sharing {c.n_kv_head} key/value heads" if c.n_kv_head != c.n_head else "")
    licences = sorted({s.get("licence") or "unknown" for s in (_manifest(ck) or {}).get("sources", [])})
    card = [
        "---", "library_name: transformers", "pipeline_tag: text-generation",
        f"tags: [{hf_class}, llm-blueprint]", "---", "",
        f"# {out.name}", "",
        f"A {hf_class} trained from scratch with an llm-blueprint project.", "",
        "## Model", "",
        f"- architecture: `{hf_class}`, {c.n_layer} layers x {c.n_embd} wide, {heads}, MLP hidden {c.ffn_hidden}",
        f"- parameters: {model.num_params():,} (weight matrices and embeddings; norms excluded)",
        f"- context: {c.block_size:,} tokens; vocabulary: {c.vocab_size:,} (byte-level BPE, `<|endoftext|>` last)",
        f"- training tokens: {tokens}", "",
        "## Training data", "", *_data_lines(ck), f"- licences of the data: {', '.join(licences) or 'unknown'}", "",
        "## Evaluation", "", *_evaluation_lines(ckpt, ck), "",
        "## Intended use", "", INTENDED_USE, "",
        "## Use", "", "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        f"tok = AutoTokenizer.from_pretrained({str(out)!r})",
        f"model = AutoModelForCausalLM.from_pretrained({str(out)!r})",
        "ids = tok(\"ROMEO:\", return_tensors=\"pt\").input_ids",
        "print(tok.decode(model.generate(ids, max_new_tokens=40, do_sample=False)[0]))", "```", "",
        f"vLLM serves the folder as it is: `vllm serve {out}`.", "",
    ]
    path = out / "README.md"
    path.write_text("\n".join(card), encoding="utf-8")
    return path
