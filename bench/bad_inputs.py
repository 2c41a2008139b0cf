"""Probe every public function and class of cvlib with bad inputs, as a hostile tester would.

The battery is tests/bad_input_cases.py: for every case, one bad value at a time in each
argument (wrong type, dtype, shape, NaN / inf, out of range). Each call runs in this process
with a timeout. Outcomes:

- ``clear``: a ``TypeError`` or ``ValueError`` whose message names the argument;
- ``unclear``: another exception, or a message that does not name the argument;
- ``silent``: no error at all (a wrong answer, or a failure postponed);
- ``hang``: no answer within the timeout.

    python bench/bad_inputs.py            # prints the counts, writes bench/results/bad_inputs.json
    python bench/bad_inputs.py --out F    # writes F instead (e.g. to probe another checkout)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import signal
import sys
import warnings
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import bad_input_cases as bad  # noqa: E402

TIMEOUT = 20  # seconds per call


class _Timeout(Exception):
    pass


def _alarm(_signum, _frame):
    raise _Timeout


def outcome(call, kwargs, argument) -> tuple[str, str]:
    """(``clear`` / ``unclear`` / ``silent`` / ``hang``, the error's first line)."""
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(TIMEOUT)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            call(**kwargs)
    except _Timeout:
        return "hang", f"no answer in {TIMEOUT} s"
    except BaseException as error:  # every outcome is counted
        message = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:200]
        return ("clear" if bad.clear(error, argument) else "unclear"), message
    finally:
        signal.alarm(0)
    return "silent", "returned without error"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "bad_inputs.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows, broken = [], []
    for name in sorted(bad.CASES):
        case = bad.CASES[name]
        status, message = outcome(case.call, case.valid(), "")
        if status != "silent":  # the valid call itself must work
            broken.append({"case": name, "error": message})
            continue
        for argument, label, kwargs in bad.attempts(name):
            status, message = outcome(case.call, kwargs, argument)
            rows.append(
                {"case": name, "argument": argument, "bad": label, "outcome": status, "message": message}
            )
    counts = Counter(r["outcome"] for r in rows)
    total = len(rows)
    print(
        f"{total} bad inputs to {len({r['case'] for r in rows})} cases "
        f"({len(bad.public_callables())} public callables): "
        + ", ".join(
            f"{k} {counts[k]} ({100 * counts[k] / total:.1f}%)"
            for k in ("clear", "unclear", "silent", "hang")
        )
    )
    if broken:
        print(f"{len(broken)} cases whose valid call fails here (not probed):", *[b["case"] for b in broken])
    for r in rows:
        if r["outcome"] != "clear":
            print(f"  {r['outcome']:7s} {r['case']}({r['argument']}= {r['bad']}): {r['message']}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "torch": torch.__version__,
                "total": total,
                "counts": dict(counts),
                "broken_cases": broken,
                "not_clear": [r for r in rows if r["outcome"] != "clear"],
            },
            indent=1,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
