"""Coverage-guided fuzzing (atheris, i.e. libFuzzer) of the native OTLP parser against upb.

Every input goes through ``convert_bytes`` with and without the native parser; any difference
(spans, Jaeger bytes, rejections, DecodeError) or any crash is a finding: libFuzzer stops and
writes the input to ``crash-*``. The bounded CI run is tests/hostile/test_fuzz_native.py. The long
run, seeded with BuildKit requests (``--seed-corpus DIR`` writes them first)::

    python -m tests.hostile.fuzz_native --seed-corpus /tmp/otlp-corpus -max_total_time=600 /tmp/otlp-corpus

Coverage: atheris instruments the Python it imports (relay.convert, which runs the native
results through the same span builders). To guide on the C code too, build the extension with
``CC=clang CFLAGS="-fsanitize=fuzzer-no-link,address"`` and preload atheris' ASan runtime (see
the atheris README, "Fuzzing native extensions"); the harness is the same.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["relay"]):
    from relay import native
    from tests.native_oracle import differs

from bench.fuzz_bodies import SEEDS

PARSER = native.load_parser({})


class Finding(AssertionError):
    """The native parser and upb disagree on one input."""


def test_one_input(data: bytes) -> None:
    difference = differs(data, PARSER)
    if difference:
        raise Finding(difference)


def write_seeds(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for index, seed in enumerate(SEEDS):
        (directory / f"seed-{index}").write_bytes(seed)


def main(argv: list[str]) -> None:
    if PARSER is None:
        sys.exit("relay.native._otlp is not built: nothing to fuzz")
    if len(argv) > 2 and argv[1] == "--seed-corpus":
        write_seeds(Path(argv[2]))
        argv = [argv[0], *argv[3:]]
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
