"""Cut the small slices in this folder out of the full public samples (run once, by hand).

    python data/samples/formats/make_slices.py SRC

SRC holds the upstream sample files under the same relative paths as here (each folder's
README names the upstream repository and commit). A slice keeps the upstream bytes: JSON Lines
keep their lines byte for byte (gzip is re-compressed), JSON arrays are re-serialised in the
upstream file's own style (checked: re-serialising the whole upstream file reproduces it
exactly), and records keep their upstream order. Which records: each folder's README.
"""

from __future__ import annotations

import gzip
import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# file -> 1-based record numbers to keep (JSON Lines: line numbers; JSON arrays: positions)
SLICES: dict[str, list[int] | None] = {
    "hh-rlhf/helpful-base/test.jsonl.gz": [*range(1, 61), 318, 500, 921],
    "hh-rlhf/harmless-base/test.jsonl.gz": [*range(1, 61), 542],
    "llamafactory-dpo-en-demo/dpo_en_demo.json": list(range(1, 13)),
    "llamafactory-kto-en-demo/kto_en_demo.json": list(range(1, 21)),
    "oasst-export-sample/en_100_message.jsonl": [1, 17, 21, 23, 27, 49],
    "oasst2-trees/oasst2_filtered.jsonl": [1, 2, 3, 4, 5, 41, 119, 130, 211],
    "finegrained-rlhf-qa-feedback/dev_feedback.json": list(range(1, 9)),
    "prometheus-vicuna-feedback/vicuna_eval.json": list(range(1, 9)),
    "helpsteer2-nemo-rm-sample/test-rm.jsonl": None,  # None: the whole file
    "prm800k-examples/prm800k-phase1-train-example.json": None,
    "prm800k-examples/prm800k-phase2-test-example.json": None,
}

# JSON array files: json.dumps keyword arguments and the trailing text of the upstream file
ARRAY_STYLE = {
    "dpo_en_demo.json": ({"indent": 2, "ensure_ascii": False}, "\n"),
    "kto_en_demo.json": ({"indent": 2, "ensure_ascii": False}, "\n"),
    "dev_feedback.json": ({"indent": 2, "ensure_ascii": True}, ""),
    "vicuna_eval.json": ({"indent": 4, "ensure_ascii": True}, ""),
}


def cut_lines(src: Path, dst: Path, keep: list[int]) -> None:
    opener = gzip.open if src.suffix == ".gz" else open
    with opener(src, "rb") as f:
        lines = f.read().splitlines(keepends=True)
    data = b"".join(lines[i - 1] for i in keep)
    if src.suffix == ".gz":
        dst.write_bytes(gzip.compress(data, compresslevel=9, mtime=0))
    else:
        dst.write_bytes(data)


def cut_array(src: Path, dst: Path, keep: list[int]) -> None:
    text = src.read_text(encoding="utf-8")
    kwargs, tail = ARRAY_STYLE[src.name]
    records = json.loads(text)
    if json.dumps(records, **kwargs) + tail != text:
        raise SystemExit(f"{src}: the recorded JSON style does not reproduce the file")
    out = json.dumps([records[i - 1] for i in keep], **kwargs) + tail
    dst.write_text(out, encoding="utf-8")


def main(src_root: Path) -> None:
    for rel, keep in SLICES.items():
        src, dst = src_root / rel, HERE / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if keep is None:
            shutil.copyfile(src, dst)
        elif src.name in ARRAY_STYLE:
            cut_array(src, dst, keep)
        else:
            cut_lines(src, dst, keep)
        print(f"{rel}: {dst.stat().st_size:,} bytes")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]))
