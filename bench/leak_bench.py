"""The leak detector's cost on a job's output path (service/leak_detector.py), as a ratio against
the same path without it, measured in the same run on the same bytes:

  python -m bench.leak_bench [--megabytes 100]

Without the detector, the output path is what the executor does to a job's output: decode it as UTF-8 and
redact the job's values (service/executor/redaction.py). With it: the same, then the detector fed in chunks
of 256 KiB, as a stream, and the findings masked. The output is the build-log corpus shipped for the tests
(tests/data/build-log.txt.gz), cut into outputs of 1 MiB (the service's default cap per job) until the
total is reached, each one a job with 20 values of its own (random, as tokens are), two of which it
leaks: one as is (redaction's), one split over two lines (the detector's). Samples of the two paths
alternate, so load on the shared cores falls on both alike; the CPU time of this process is what is timed.
"""
import argparse
import base64
import gzip
import os
import secrets
import time

from service.executor.redaction import redact
from service.leak_detector import LeakScanner, mask

CORPUS = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "build-log.txt.gz")
OUTPUT_BYTES = 1 << 20
CHUNK = 1 << 18


def outputs(total: int) -> list[tuple[bytes, dict[str, str]]]:
    with gzip.open(CORPUS, "rb") as f:
        corpus = f.read()
    jobs, at = [], 0
    for _ in range(max(1, total // OUTPUT_BYTES)):
        values = {f"VALUE_{i}": base64.urlsafe_b64encode(secrets.token_bytes(24)).decode() for i in range(20)}
        body = bytearray()
        while len(body) < OUTPUT_BYTES:
            body += corpus[at:at + OUTPUT_BYTES - len(body)]
            at = (at + OUTPUT_BYTES) % len(corpus)
        split = values["VALUE_1"]
        body[1000:1000] = f"token {values['VALUE_0']}\n{split[:20]}\n{split[20:]}\n".encode()
        jobs.append((bytes(body[:OUTPUT_BYTES]), values))
    return jobs


def without(output: bytes, values: dict[str, str]) -> int:
    return len(redact(output.decode("utf-8", errors="replace"), values))


def with_detector(output: bytes, values: dict[str, str]) -> int:
    text = redact(output.decode("utf-8", errors="replace"), values)
    scanner = LeakScanner(values, b"bench", "bench-user")
    for i in range(0, len(text), CHUNK):
        scanner.feed(text[i:i + CHUNK])
    findings = scanner.finish()
    assert any(f.env_var == "VALUE_1" for f in findings), "the split value was not found"
    return len(mask(text, findings))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--megabytes", type=int, default=100)
    args = parser.parse_args()
    jobs = outputs(args.megabytes * OUTPUT_BYTES)
    base = det = 0.0
    for output, values in jobs:  # alternating: each job through both paths, one after the other
        t = time.process_time()
        without(output, values)
        base += time.process_time() - t
        t = time.process_time()
        with_detector(output, values)
        det += time.process_time() - t
    mb = len(jobs) * OUTPUT_BYTES / 1e6
    print(f"leak detector on {mb:.0f} MB of job output ({len(jobs)} outputs of 1 MiB, 20 values each): "
          f"without {mb / base:.1f} MB/s ({base:.2f} s CPU) | with {mb / det:.1f} MB/s ({det:.2f} s CPU) | "
          f"ratio {det / base:.2f}x (target <= 2x)")


if __name__ == "__main__":
    main()
