"""Leak guard throughput beside Yelp's detect-secrets, on the same generated text.

Usage: leaks.py STOCKADE_BENCH VENV_PYTHON [MEGABYTES] [PEER_MEGABYTES]  (prints JSON)

stockade-bench writes the text (mixed logs, code, JSON, base64, hashes, UUIDs, with 20
known secrets planted in several encodings) and times one thread scanning it with every
rule on. detect-secrets (its default plugins) scans a prefix of the same file: it is
slower by far, so it gets less text; both figures are MiB per second of one process.
"""
import json
import os
import subprocess
import sys
import tempfile
import time

BENCH, PYTHON = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
MEGABYTES = int(sys.argv[3]) if len(sys.argv) > 3 else 100
PEER_MEGABYTES = int(sys.argv[4]) if len(sys.argv) > 4 else 4

with tempfile.TemporaryDirectory() as directory:
    corpus = os.path.join(directory, "corpus.txt")
    ours = json.loads(subprocess.run([BENCH, "--leaks", corpus, "--megabytes", str(MEGABYTES)],
                                     check=True, capture_output=True, text=True).stdout)
    prefix = os.path.join(directory, "prefix.txt")
    with open(corpus, "rb") as source, open(prefix, "wb") as target:
        target.write(source.read(PEER_MEGABYTES << 20))
    detect = os.path.join(os.path.dirname(PYTHON), "detect-secrets")
    start = time.perf_counter()
    done = subprocess.run([detect, "scan", prefix], check=True, capture_output=True, text=True, cwd=directory)
    seconds = time.perf_counter() - start
    found = sum(len(v) for v in json.loads(done.stdout).get("results", {}).values())
    version = subprocess.run([detect, "--version"], capture_output=True, text=True).stdout.strip()
    print(json.dumps({
        "stockade": ours,
        "detect_secrets": {"version": version, "megabytes": PEER_MEGABYTES, "seconds": seconds,
                           "mib_per_second": PEER_MEGABYTES / seconds, "findings": found},
    }, indent=2))
