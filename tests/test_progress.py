import io

from sdk._progress import ProgressBar


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_draws_counts_on_a_tty_and_ends_the_line():
    stream = Tty()
    with ProgressBar(4, "tiles", stream=stream) as bar:
        for _ in range(4):
            bar.update()
    text = stream.getvalue()
    assert "tiles" in text and "4/4" in text and text.endswith("\n")


def test_silent_when_not_a_tty():
    stream = io.StringIO()
    with ProgressBar(3, "files", stream=stream) as bar:
        bar.update(3)
    assert stream.getvalue() == ""
