"""How good is the tokenizer? Compression, fertility, exact round trips and speed, for several vocab sizes.

`tokenizer-eval` trains on the training documents and measures on the held-out (validation) documents, the
same split `prepare` makes. Bytes per token is the compression: more bytes per token means shorter
sequences, so more text per context window and per FLOP. Fertility is tokens per whitespace-separated word
(Rust et al., 2021, "How Good is Your Tokenizer?"): close to 1 means most words are a single token.
`bench tokenizer` times training and encoding on the built-in Shakespeare (one JSON object).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Callable

from .clean import Cleaner
from .data import prepare, validation_documents
from .sources import SourceSpec, iter_documents
from .tokenizer import BPETokenizer

# Round-trip probes beyond the corpus: text the tokenizer has rarely or never seen must still come back
# byte for byte (byte-level BPE has no unknown token).
PROBES = {
    "non_ascii": "Ünïcödé café — naïve Straße, Ελληνικά, русский, 日本語のテキスト, עברית, हिन्दी",
    "emoji": "emoji 😀👍🏽 family 👨‍👩‍👧 flags 🇫🇷🇯🇵 and ✨ sparkles",
    "code": "def f(x: int) -> int:\n\tif x != 0:  # note\r\n        return {'k': [x ** 2]}\n    return -1\n",
    "whitespace": "  \n\n\t \r\n   trailing   ",
}


def split_documents(spec: SourceSpec, val_fraction: float = 0.05) -> tuple[list[str], list[str]]:
    """Cleaned documents of `spec` (in memory: use spec.max_bytes on big corpora), split as `prepare` does."""
    cleaner = Cleaner()
    docs = [d.text for d in cleaner(iter_documents(spec))]
    if len(docs) < 2:
        raise ValueError(f"{spec.describe()} has {len(docs)} document(s) after cleaning; held-out evaluation "
                         "needs at least 2")
    val = validation_documents(len(docs), val_fraction)
    return [d for i, d in enumerate(docs) if i not in val], [d for i, d in enumerate(docs) if i in val]


def _round_trip(tok: BPETokenizer, texts: list[str]) -> bool:
    """Both encoders give the same ids and decoding gives the text back, for every text."""
    for text in texts:
        ids = tok.encode(text)
        if tok.encode_fast(text) != ids or tok.decode(ids) != text:
            return False
    return True


def evaluate(train: list[str], val: list[str], vocab_sizes: list[int],
             log: Callable[[str], None] = print) -> dict:
    """Train once for the largest vocab, then measure every requested size on the held-out documents.

    BPE is greedy: the merges learned for a vocab of V are the first V - 257 merges learned for any
    larger vocab, so the smaller tokenizers are prefixes of the largest one (no retraining).
    """
    if not vocab_sizes or min(vocab_sizes) < 257:
        raise ValueError(f"vocab sizes must be at least 257 (256 bytes + {BPETokenizer.EOT}), got {vocab_sizes}")
    t0 = time.perf_counter()
    full = BPETokenizer.train(train, max(vocab_sizes), log=log, allow_smaller=True)
    train_s = time.perf_counter() - t0
    text = "".join(val)
    n_bytes, n_words = len(text.encode("utf-8")), len(text.split())
    rows = []
    for v in sorted(vocab_sizes):
        tok = BPETokenizer(full.merges[: v - 257])
        t0 = time.perf_counter()
        n_tokens = len(tok.encode_fast(text))
        fast_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        reference = tok.encode(text)
        ref_s = time.perf_counter() - t0
        rows.append({
            "vocab_size": v,
            "actual_vocab_size": tok.vocab_size,
            "bytes_per_token": round(n_bytes / max(n_tokens, 1), 4),
            "tokens_per_word": round(n_tokens / max(n_words, 1), 4),
            "round_trip": n_tokens == len(reference) and _round_trip(tok, val + list(PROBES.values())),
            "encode_mb_per_s": round(n_bytes / 1e6 / max(fast_s, 1e-9), 2),
            "reference_mb_per_s": round(n_bytes / 1e6 / max(ref_s, 1e-9), 2),
        })
    return {
        "train_documents": len(train),
        "val_documents": len(val),
        "train_mb": round(sum(len(t.encode("utf-8")) for t in train) / 1e6, 3),
        "val_mb": round(n_bytes / 1e6, 3),
        "train_s": round(train_s, 3),
        "results": rows,
    }


def format_table(report: dict) -> str:
    """The results as an aligned text table, one row per vocab size."""
    head = f"{'vocab':>7} {'bytes/token':>11} {'tokens/word':>11} {'round trip':>10} {'fast MB/s':>9} {'ref MB/s':>8}"
    lines = [
        f"held out: {report['val_documents']} documents, {report['val_mb']} MB; trained on "
        f"{report['train_documents']} documents ({report['train_mb']} MB) in {report['train_s']}s",
        head,
    ]
    for r in report["results"]:
        vocab = f"{r['vocab_size']}" + ("*" if r["actual_vocab_size"] != r["vocab_size"] else "")
        lines.append(f"{vocab:>7} {r['bytes_per_token']:>11.3f} {r['tokens_per_word']:>11.3f} "
                     f"{'exact' if r['round_trip'] else 'FAILED':>10} {r['encode_mb_per_s']:>9.1f} "
                     f"{r['reference_mb_per_s']:>8.1f}")
    if any(r["actual_vocab_size"] != r["vocab_size"] for r in report["results"]):
        lines.append("* the training text supplies fewer merges: the vocabulary stopped early")
    return "\n".join(lines)


def run_eval(spec: SourceSpec, vocab_sizes: list[int], out: Path, val_fraction: float = 0.05,
             log: Callable[[str], None] = print) -> dict:
    """`tokenizer-eval`: evaluate, print the table, write the report as JSON to `out`."""
    train, val = split_documents(spec, val_fraction)
    report = {"source": spec.describe(), **evaluate(train, val, vocab_sizes, log=lambda s: None)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    log(format_table(report))
    log(f"wrote {out}")
    return report


def bench_tokenizer(vocab_size: int = 4096, max_bytes: int | None = None, workers: list[int] | None = None,
                    log: Callable[[str], None] = print) -> dict:
    """Seconds to train `vocab_size` on the built-in Shakespeare (~5 MB), encoding speed of the fast engine
    (tiktoken, one thread) and of the reference encoder, and the encode stage of `prepare` for each
    number of worker processes. Timings depend on the machine and on what else runs on it."""
    spec = SourceSpec("shakespeare", max_bytes=max_bytes)
    text = "".join(d.text for d in iter_documents(spec))
    mb = len(text.encode("utf-8")) / 1e6
    t0 = time.perf_counter()
    tok = BPETokenizer.train([text], vocab_size, allow_smaller=True)
    train_s = time.perf_counter() - t0
    tok.encode_fast("warm up")  # builds the tiktoken tables outside the timing
    t0 = time.perf_counter()
    fast = tok.encode_fast(text)
    fast_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    reference = tok.encode(text)
    ref_s = time.perf_counter() - t0
    result = {
        "vocab_size": tok.vocab_size,
        "mb": round(mb, 3),
        "train_s": round(train_s, 3),
        "encode_mb_per_s": round(mb / fast_s, 2),
        "reference_encode_mb_per_s": round(mb / ref_s, 2),
        "engines_agree": fast == reference,
        "cpu_count": os.cpu_count(),
    }
    prepare_speed = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in workers or sorted({1, min(2, os.cpu_count() or 1)}):
            log(f"bench: prepare with {n} worker(s)")
            out = prepare(spec, None, vocab_size, Path(tmp) / f"w{n}", log=lambda s: None, workers=n)
            prepare_speed[str(n)] = json.loads((out / "report.json").read_text())["encode"]["mb_per_s"]
    result["prepare_encode_mb_per_s"] = prepare_speed
    return result
