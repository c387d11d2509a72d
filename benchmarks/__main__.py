"""`python -m benchmarks [--quick] [--model tiny_random] [--sections sft,dpo,merge,generation,util] ...`"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from mixmerge.errors import report_errors
from mixmerge.logs import setup_logging


@report_errors
def main(argv: Sequence[str] | None = None) -> dict:
    setup_logging()
    from benchmarks.options import parse_options
    from benchmarks.run import run_bench

    return run_bench(parse_options(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
