"""`check run first_sample`: does the quick start's first sample look like its corpus?

The quick start trains the tiny config on the built-in plays (`train --config tiny`) and samples from it
(`generate --prompt "ROMEO:" --seed 1`). A reader judges that sample by whether it reads like the plays: words
they know, in about the right places. The first of these can be counted, so this experiment counts it:

    corpus word share = (words of the sample that are also words of the training text) / (words of the sample)

- A word is a run of letters, with apostrophes only inside it (`[a-z]+('[a-z]+)*` on lowercased text):
  Shakespeare's "o'er" and "is't" stay whole, while quotation marks and the elisions' leading apostrophe
  ("'tis" -> "tis") fall off, the same way on both sides. Letters only: digits and punctuation are not what
  makes a sample read like English, and lowercasing forgives a model that writes a speaker's name in another case.
- Only the text after the prompt counts, so the prompt's own word (ROMEO) is not counted.
- Every occurrence counts (not each distinct word once): the measure is what share of the text a reader finds
  readable, and a sample that repeats one real word is still judged by the rest of its words.
- The training text is the decoded training split of the prepared data (validation plays excluded): the words
  the model could have learned.

What the numbers mean, measured on the plays with the tiny config's 2,048-token vocabulary: the held-out plays
themselves score 98 %. 200 tokens drawn uniformly at random score 37 to 42 % (seeds 1, 2, 3), and drawn by their
frequency in the plays (a model that learned token counts and nothing else) 49 to 60 %: short words ("a", "to",
"the") arise by chance, and many tokens are whole words. The quick start's model scores above 80 % (checks.yml
gives the figures per track). Whether the sentences make sense is not judged here.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .config import Config, load_config

WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")


def words(text: str) -> list[str]:
    """The words of `text`, lowercased, in order (see the module docstring for what a word is)."""
    return WORD.findall(text.lower())


def word_set(texts: Iterable[str]) -> set[str]:
    """The distinct words of some texts: the vocabulary a sample is checked against."""
    known: set[str] = set()
    for text in texts:
        known.update(words(text))
    return known


def corpus_word_share(sample: str, known: set[str]) -> float:
    """The share of the words of `sample` (every occurrence) found in `known`; 0.0 when it has no words at all,
    since a sample of punctuation and spaces reads like no corpus."""
    found = words(sample)
    return sum(w in known for w in found) / len(found) if found else 0.0


def training_text(prepared: Path) -> list[str]:
    """The training split of prepared data, decoded back to text, one string per document."""
    from .data import TokenDataset
    from .tokenizer import BPETokenizer

    tok = BPETokenizer.load(prepared / "tokenizer.json")
    ids = TokenDataset(prepared, "train").read(0, len(TokenDataset(prepared, "train"))).tolist()
    documents, start = [], 0
    for end in [i for i, t in enumerate(ids) if t == tok.eot_id] + [len(ids)]:
        if end > start:
            documents.append(tok.decode(ids[start:end]))
        start = end + 1
    return documents


def cpu_seconds() -> float:
    """CPU seconds used so far by this process (all its threads) and by its children that have exited (prepare's
    encoding workers). os.times, unlike the resource module, exists on every platform."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def run_first_sample(work: Path, setup: dict[str, Any], log: Callable[[str], None] = print,
                     cfg: Config | None = None) -> tuple[dict[str, float], dict[str, Any]]:
    """The quick start in `work`: prepare the plays and train the tiny config (`train --config tiny`: the config's
    own defaults and seed), then generate from setup["prompt"] with `generate`'s defaults for each seed in
    setup["seeds"] and measure the corpus word share. `cfg` replaces the tiny config (the tests use a shorter run).

    Returns (figures, notes): the first seed's share (`generate --seed 1`, the quick start's) and the CPU seconds
    of prepare + train + one generate. CPU, not wall time, is judged: it is what the config decides, while the
    wall time also counts whatever else the machine runs (on an idle 2-core laptop the two are about equal). The
    notes hold every seed's share and sample, and each stage's wall and CPU seconds; the separate commands of the
    quick start add their Python start-ups, a few seconds each, which this in-process run does not pay."""
    from .generate import generate_texts
    from .sampling import SamplingParams
    from .train import ensure_data, train

    if cfg is None:  # its own copy of the data, so the prepare step is timed as on a first run
        cfg = load_config("tiny", overrides={"data": {"dir": str(work / "data")}})
    silent = lambda *a, **k: None  # noqa: E731
    marks = [(time.perf_counter(), cpu_seconds())]
    prepared = ensure_data(cfg, log=silent)
    marks.append((time.perf_counter(), cpu_seconds()))
    train(cfg, out_dir=work / "run", device="cpu", log=silent)
    marks.append((time.perf_counter(), cpu_seconds()))
    prompt, samples = setup["prompt"], {}
    for seed in setup["seeds"]:
        params = SamplingParams(max_tokens=setup["tokens"], seed=seed)  # generate's defaults otherwise
        samples[seed] = generate_texts(work / "run" / "ckpt.pt", [prompt], params, "cpu")[0]
        if len(marks) == 3:  # the quick start generates once
            marks.append((time.perf_counter(), cpu_seconds()))
    known = word_set(training_text(prepared))
    shares = {seed: corpus_word_share(text[len(prompt):], known) for seed, text in samples.items()}
    for seed, share in shares.items():
        log(f"seed {seed}: {share:.1%} of the words are words of the training text")
    stages = ("prepare", "train", "generate")
    wall = {stage: round(b[0] - a[0], 2) for stage, a, b in zip(stages, marks, marks[1:])}
    cpu = {stage: round(b[1] - a[1], 2) for stage, a, b in zip(stages, marks, marks[1:])}
    figures = {"word_share": shares[setup["seeds"][0]], "quick_start_cpu_s": marks[-1][1] - marks[0][1]}
    notes = {"shares": {seed: round(share, 4) for seed, share in shares.items()}, "wall_s": wall, "cpu_s": cpu,
             "corpus_words": len(known), "sample": samples[setup["seeds"][0]]}
    return figures, notes
