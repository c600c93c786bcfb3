"""cosub_seg/progress.py: a progress bar outside a terminal writes twenty times, not once an item."""
import io
import re

from cosub_seg.progress import ThrottledProgressBar


def test_a_progress_bar_outside_a_terminal_writes_twenty_times_not_once_an_item():
    out = io.StringIO()  # not a terminal, as a log file or a pipe
    bar = ThrottledProgressBar(2000, file=out)
    for _ in range(2000):
        bar.update()
    text = out.getvalue()
    assert text.count('\r') == 20 and len(text) < 3000  # a bar per item wrote ~200 KB
    assert re.search(r'\] 2000/2000, [\d.]+ task/s, elapsed: \d+s, ETA: +0s$', text)
