"""Progress bars of the command line: tqdm's bar on a terminal; in a log file or a batch job's output, where a
bar's carriage returns would pile up on one line, a plain line at most every :data:`LOG_INTERVAL_S` seconds (a
loop that ends sooner says nothing there). And :func:`counted`, for how many of a thing a message names."""

from __future__ import annotations

import sys

from tqdm import tqdm

LOG_INTERVAL_S = 30.0
LOG_FORMAT = "{desc}: {percentage:3.0f}% {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"


class _Lines:
    """A stream for tqdm that writes each refresh of the bar as a line of its own (once)."""

    def __init__(self, stream):
        self.stream, self.last = stream, ""

    def write(self, text: str) -> None:
        line = text.replace("\r", "").strip()
        if line and line != self.last:
            self.stream.write(line + "\n")
            self.last = line

    def flush(self) -> None:
        self.stream.flush()


class _LogBar(tqdm):
    """A bar written as lines: refreshed by its interval only, not by each new postfix (a case's name, a loss)."""

    def set_postfix(self, ordered_dict=None, refresh=True, **kwargs):
        super().set_postfix(ordered_dict, refresh=False, **kwargs)

    def set_postfix_str(self, s="", refresh=True):
        super().set_postfix_str(s, refresh=False)


def counted(n: int, thing: str) -> str:
    """``n`` things in words: "1 case", "2 cases", "0 cases"."""
    return f"{n} {thing}{'s' * (n != 1)}"


def progress_bar(iterable=None, *, enabled: bool = True, stream=None, **kwargs) -> tqdm:
    """``tqdm(iterable, **kwargs)`` on ``stream`` (default stderr): a bar on a terminal, lines elsewhere, nothing
    where not ``enabled``."""
    stream = stream or sys.stderr
    if not enabled:
        return tqdm(iterable, disable=True, **kwargs)
    if stream.isatty():
        return tqdm(iterable, file=stream, **kwargs)
    return _LogBar(iterable, file=_Lines(stream), mininterval=LOG_INTERVAL_S, delay=LOG_INTERVAL_S,
                   bar_format=LOG_FORMAT, **kwargs)
