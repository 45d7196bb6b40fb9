"""A terminal labeller: claim an item, show it, take a label with one key, repeat."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import TextIO

from onlearn.tools.client import Client, ClientError, readable_detail


def read_key(stream: TextIO = sys.stdin) -> str:
    """One key press on a terminal; one line (its first character) from a pipe or a file."""
    if stream.isatty():
        import termios
        import tty

        fd = stream.fileno()
        saved = termios.tcgetattr(fd)
        try:
            # TCSANOW, not the default TCSAFLUSH: a key pressed before this call must not be lost.
            tty.setcbreak(fd, termios.TCSANOW)
            return os.read(fd, 1).decode(errors="replace")
        finally:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
    line = stream.readline()
    return line.strip()[:1] if line else "q"  # end of input quits


def render(item: dict, choices: list) -> str:
    width = max((len(k) for k in item["features"]), default=0)
    lines = [f"\nitem {item['item_id']}  ({item['reason']}, uncertainty {item['uncertainty']:.2f})"]
    lines += [f"  {k.ljust(width)}  {json.dumps(v)}" for k, v in item["features"].items()]
    guess = json.dumps(item["guess"]) if item["guess"] is not None else "(nothing learned yet)"
    proba = ", ".join(f"{json.dumps(label)}: {p:.2f}" for label, p in item["proba"])
    lines.append(f"  model's guess: {guess}" + (f"   [{proba}]" if proba else ""))
    keys = "  ".join(f"{i + 1}) {json.dumps(c)}" for i, c in enumerate(choices[:9]))
    lines.append(f"  {keys}  s) skip  q) quit")
    return "\n".join(lines)


def _release(client: Client, model: str, item: dict) -> str:
    """Give the claimed item back at once (others need not wait for its lease to end)."""
    try:
        client.release(model, item["item_id"], claim_id=item["claim_id"])
    except ClientError as e:
        if e.status in (409, 410):  # labelled or claimed by someone else meanwhile: not ours
            return f"The item was not yours any more ({readable_detail(e.detail)})."
        raise
    return "The item you held is back in the queue."


def run_labeller(
    client: Client,
    model: str,
    *,
    labeller: str | None = None,
    lease_s: float | None = None,
    wait: bool = False,
    key: Callable[[], str] = read_key,
    out: TextIO = sys.stdout,
    poll_s: float = 2.0,
) -> dict[str, int]:
    """Label until the queue is empty (or, with ``wait``, until ``q``). Returns counts."""
    counts = {"labelled": 0, "skipped": 0}
    while True:
        items = client.claim(model, limit=1, lease_s=lease_s, labeller=labeller)
        if not items:
            if not wait:
                print("\nThe queue is empty.", file=out)
                return counts
            time.sleep(poll_s)
            continue
        item = items[0]
        choices = item["classes"] or [label for label, _ in item["proba"]]
        print(render(item, choices), file=out, flush=True)
        while True:
            pressed = key()
            if pressed == "q":
                print(f"Bye. {_release(client, model, item)}", file=out)
                return counts
            try:
                if pressed == "s":
                    client.skip(
                        model, item["item_id"], claim_id=item["claim_id"], labeller=labeller
                    )
                    counts["skipped"] += 1
                    print("  skipped", file=out)
                    break
                if pressed.isdigit() and 1 <= int(pressed) <= min(len(choices), 9):
                    label = choices[int(pressed) - 1]
                    result = client.label(
                        model, item["item_id"], label, claim_id=item["claim_id"], labeller=labeller
                    )
                    counts["labelled"] += 1
                    print(f"  labelled {json.dumps(label)} (seq {result['seq']})", file=out)
                    break
            except ClientError as e:
                if e.status in (409, 410):
                    print(f"  {readable_detail(e.detail)}", file=out)
                    break
                raise
            print(f"  press 1-{min(len(choices), 9)}, s or q", file=out, flush=True)
