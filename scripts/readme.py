#!/usr/bin/env python3
"""Runs the command blocks of README.md as they are written.

Every ```sh block of the README carries a marker on the line before it:

    <!-- ci: main -->            the main command: run
    <!-- ci: run -->             run
    <!-- ci: fails: TEXT -->     run; it must end with exit code 1 and an `error:`
                                 message that contains TEXT
    <!-- ci: skip: REASON -->    not run, for the reason given

A block without a marker is an error, so the README and CI cannot drift
apart. Blocks run in order, each with `bash -e -o pipefail`, from a scratch
directory inside target/ (so `cargo` finds this workspace and the files a
block writes stay out of the source tree).

    python3 scripts/readme.py check   # every block is marked
    python3 scripts/readme.py list    # the blocks and what CI does with them
    python3 scripts/readme.py run     # run the main block and the run blocks
"""

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SCRATCH = ROOT / "target" / "readme"
SHELLS = {"sh", "bash", "shell", "console"}
MARKER = re.compile(
    r"^<!--\s*ci:\s*(?P<action>main|run|fails|skip)(:\s*(?P<text>.+?))?\s*-->$"
)
# An opening fence: its character run (``` or ~~~, or longer) and info string.
FENCE = re.compile(r"^\s*(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")


def blocks():
    """(line, action, reason, text) of every shell block, in order."""
    lines = README.read_text(encoding="utf-8").splitlines()
    found, errors = [], []
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        start = i
        info = fence.group("info").strip()
        language = info.split()[0] if info else ""
        # The block ends at a fence of the same character, at least as long.
        close = re.compile(r"^\s*" + re.escape(fence.group("fence")[0]) + "{" + str(len(fence.group("fence"))) + r",}\s*$")
        i += 1
        body = []
        while i < len(lines) and not close.match(lines[i]):
            body.append(lines[i])
            i += 1
        if i == len(lines):
            errors.append(f"README.md:{start + 1}: a code block that is never closed")
        i += 1
        if language not in SHELLS:
            continue
        before = start - 1
        while before >= 0 and not lines[before].strip():
            before -= 1
        marker = MARKER.match(lines[before].strip()) if before >= 0 else None
        action = marker.group("action") if marker else None
        text = marker.group("text") if marker else None
        if not marker or (action in ("skip", "fails")) != bool(text):
            errors.append(
                f"README.md:{start + 1}: a ```{language} block without a "
                "<!-- ci: main|run|fails: TEXT|skip: REASON --> marker on the line before it"
            )
            continue
        found.append((start + 1, action, text, "\n".join(body)))
    if sum(1 for b in found if b[1] == "main") != 1:
        errors.append("README.md: exactly one block must be marked <!-- ci: main -->")
    return found, errors


def main() -> int:
    command = sys.argv[1] if len(sys.argv) > 1 else "check"
    found, errors = blocks()
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    if errors:
        return 1
    if command == "check":
        print(f"README.md: {len(found)} command blocks, every one marked")
        return 0
    if command == "list":
        for line, action, reason, text in found:
            first = text.strip().splitlines()[0] if text.strip() else ""
            print(f"README.md:{line}: {action}{': ' + reason if reason else ''}  | {first}")
        return 0
    if command != "run":
        print(f"error: unknown command {command!r}: check, list or run", file=sys.stderr)
        return 2
    shutil.rmtree(SCRATCH, ignore_errors=True)
    SCRATCH.mkdir(parents=True)
    for line, action, reason, text in found:
        if action == "skip":
            print(f"== README.md:{line}: not run: {reason}")
            continue
        print(f"== README.md:{line} ({action}):\n{text}", flush=True)
        start = time.monotonic()
        expect_failure = action == "fails"
        result = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", text],
            cwd=SCRATCH,
            stderr=subprocess.PIPE if expect_failure else None,
            text=True,
        )
        seconds = time.monotonic() - start
        if expect_failure:
            sys.stderr.write(result.stderr)
            if result.returncode != 1 or f"error: {reason}" not in result.stderr:
                print(
                    f"error: the README block at line {line} should fail with exit code 1 "
                    f"and a message starting 'error: {reason}'; it ended with "
                    f"{result.returncode}",
                    file=sys.stderr,
                )
                return 1
        elif result.returncode != 0:
            print(
                f"error: the README block at line {line} failed with exit code "
                f"{result.returncode} after {seconds:.0f} s",
                file=sys.stderr,
            )
            return 1
        print(f"== README.md:{line}: passed in {seconds:.0f} s", flush=True)
    shutil.rmtree(SCRATCH, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
