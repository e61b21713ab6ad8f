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


def test_first_frame_before_any_progress_says_no_eta_instead_of_nan():
    stream = Tty()
    with ProgressBar(None, "tiles", stream=stream) as bar:
        bar.set_total(5)  # the first frame: nothing done yet, no rate to estimate from
        first = stream.getvalue()
        bar.update(5)
    assert "0/5" in first and "eta --" in first
    assert "nan" not in stream.getvalue()
