"""Errors meant for people: the CLI prints their message as one line and exits 2."""


class InputError(Exception):
    """A bad input from the user: the message names the input and what is accepted."""


def suggest(name: str, choices, n: int = 3) -> str:
    """' (did you mean: a, b?)' for the closest ids, or '' when nothing is close."""
    import difflib

    close = difflib.get_close_matches(name.lower(), list(choices), n=n, cutoff=0.5)
    return f" (did you mean: {', '.join(close)}?)" if close else ""
