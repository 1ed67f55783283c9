"""The data governance micro-experiments that `check` runs (check.py judges them against checks.yml): a planted
personal-data document through prepare's scan, and the manifest's file hashes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .check import Context, Outcome, decoded_documents, experiment, prepared_passages

PLANTED = {  # one of each kind pii.py detects; the card passes Luhn, the IBAN mod 97
    "email": "ada.lovelace@example.org",
    "phone": "+44 20 7946 0958",
    "ip": "172.16.254.3",
    "card": "4111 1111 1111 1111",
    "iban": "GB82 WEST 1234 5698 7654 32",
    "secret": "AKIAIOSFODNN7EXAMPLE",
}


def _corpus(ctx: Context, pii: str) -> tuple[Path, list[Path]]:
    """The passages of check.prepared_passages plus one document with PLANTED, prepared with `pii`."""
    planted = "Write to " + ", call ".join(PLANTED.values()) + " today.\n"
    return prepared_passages(ctx, {"planted.txt": planted}, pii=pii)


@experiment
def data_pii(ctx: Context) -> Outcome:
    """A planted-PII document goes through prepare --pii redact: counted in report.json, absent from the shards."""
    out, _ = _corpus(ctx, "redact")
    counts = json.loads((out / "report.json").read_text())["pii"]["counts"]
    text = "".join(decoded_documents(out, "train") + decoded_documents(out, "val"))
    left = [kind for kind, value in PLANTED.items() if value in text]
    return Outcome({"pii_found": sum(counts.values()), "pii_left": len(left)},
                   notes={"counts": counts, "left in the shards": left or "none"})


@experiment
def data_manifest(ctx: Context) -> Outcome:
    """manifest.json records every input file's sha256; meta.json records the manifest's own hash."""
    from .manifest import manifest_sha256

    out, files = _corpus(ctx, "report")
    manifest = json.loads((out / "manifest.json").read_text())
    recorded = {Path(i["path"]).name: i["sha256"] for s in manifest["sources"] for i in s["inputs"]}
    wrong = [f.name for f in files if recorded.get(f.name) != hashlib.sha256(f.read_bytes()).hexdigest()]
    meta = json.loads((out / "meta.json").read_text())
    if meta["manifest_sha256"] != manifest_sha256(manifest):
        wrong.append("meta.json manifest_sha256")
    return Outcome({"hash_mismatches": len(wrong), "inputs_recorded": len(recorded)},
                   expected={"inputs_recorded": len(files)}, notes={"mismatches": wrong or "none"})
