"""``dagctl``'s tables and colours: plain aligned columns, like ``docker ps`` and ``kubectl get``.

Rules (issue 18):

- An id is never cut: columns marked ``whole`` (run ids, names) always show every character.
- On a terminal narrower than the table, optional columns go first (highest ``drop`` first), then
  the widest remaining cut-able column wraps onto more lines; ids never move or break.
- Into a pipe or a file (no terminal, no ``COLUMNS``) nothing is dropped or wrapped: a script that
  reads ``dagctl runs list | awk '{print $1}'`` gets whole ids.
- Colour only on a terminal, and never with ``NO_COLOR`` set.

Plain text on purpose: no table library is imported, which keeps ``dagctl`` start-up short
(scripts/bench/bench_cli.py).
"""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

GAP = "  "
STYLES = {"bold": "1", "red": "31", "green": "32", "yellow": "33", "magenta": "35", "cyan": "36"}


@dataclass(frozen=True)
class Column:
    header: str
    whole: bool = False  # never cut or wrapped (ids, names)
    drop: int = 0  # 0: always shown; otherwise dropped on a narrow terminal, highest first


@dataclass(frozen=True)
class Cell:
    text: str
    style: str = ""  # a key of STYLES


def colour_enabled() -> bool:
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def styled(text: str, style: str) -> str:
    if not style or not colour_enabled():
        return text
    return f"\x1b[{STYLES[style]}m{text}\x1b[0m"


def terminal_width() -> int | None:
    """The width to fit: ``COLUMNS``, else the terminal's; None when writing to a pipe or a file."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if not sys.stdout.isatty():
        return None
    try:
        return os.get_terminal_size(sys.stdout.fileno()).columns
    except OSError:
        return None


def _fits(widths: Sequence[int], width: int) -> bool:
    return sum(widths) + len(GAP) * (len(widths) - 1) <= width


def render(columns: Sequence[Column], rows: Sequence[Sequence[str | Cell]], width: int | None) -> list[str]:
    """The table's lines, fitted to ``width`` (None: any width)."""
    cells = [[c if isinstance(c, Cell) else Cell(c) for c in row] for row in rows]
    shown = list(range(len(columns)))
    natural = [max([len(columns[i].header)] + [len(row[i].text) for row in cells]) for i in shown]
    if width is not None:
        # Optional columns go first, highest drop first (then the rightmost).
        for index in sorted((i for i in shown if columns[i].drop), key=lambda i: (-columns[i].drop, -i)):
            if _fits([natural[i] for i in shown], width):
                break
            shown.remove(index)
    widths = {i: natural[i] for i in shown}
    if width is not None and not _fits(list(widths.values()), width):
        # Wrap the widest column that may be cut, down to what is left (at least 8 characters).
        cuttable = [i for i in shown if not columns[i].whole]
        if cuttable:
            widest = max(cuttable, key=lambda i: widths[i])
            rest = sum(w for i, w in widths.items() if i != widest) + len(GAP) * (len(shown) - 1)
            widths[widest] = max(8, width - rest)
    last = shown[-1]
    lines = []
    for row in [[Cell(columns[i].header, "bold") for i in range(len(columns))], *cells]:
        wrapped = {
            i: textwrap.wrap(row[i].text, widths[i], break_long_words=False, break_on_hyphens=False) or [""]
            if len(row[i].text) > widths[i]
            else [row[i].text]
            for i in shown
        }
        for n in range(max(len(parts) for parts in wrapped.values())):
            parts = []
            for i in shown:
                text = wrapped[i][n] if n < len(wrapped[i]) else ""
                padded = text if i == last else text.ljust(widths[i])
                parts.append(styled(padded, row[i].style) if text else padded)
            lines.append(GAP.join(parts).rstrip())
    return lines


def print_table(columns: Sequence[Column], rows: Sequence[Sequence[str | Cell]]) -> None:
    sys.stdout.write("".join(line + "\n" for line in render(columns, rows, terminal_width())))
