"""Errors meant for people: the CLI prints their message as one line and exits 2."""


class InputError(Exception):
    """A bad input from the user: the message names the input and what is accepted.

    `str(e)` stays the one clear line people read; `input` (which input: "context", "gpus",
    "model", ...), `value` (what was given) and `accepted` (what would be) are the same facts
    for programs (`--json` errors, the web API), filled where the raiser knows them."""

    def __init__(self, message: str, *, input: str | None = None, value=None, accepted: str | None = None):
        super().__init__(message)
        self.input = input
        self.value = value
        self.accepted = accepted

    @property
    def message(self) -> str:
        return str(self)

    def to_dict(self) -> dict:
        """The `{"error": {...}}` body of a --json error and of the web API's 4xx answers."""
        value = self.value if isinstance(self.value, (str, int, float, bool)) or self.value is None else str(self.value)
        return {"error": {"input": self.input, "value": value, "message": str(self), "accepted": self.accepted}}


def suggest(name: str, choices, n: int = 3) -> str:
    """' (did you mean: a, b?)' for the closest ids, or '' when nothing is close."""
    import difflib

    close = difflib.get_close_matches(name.lower(), list(choices), n=n, cutoff=0.5)
    return f" (did you mean: {', '.join(close)}?)" if close else ""


def read_yaml_file(path, what: str):
    """A user's YAML file, or one clear InputError naming it (missing, a directory or special
    file, too large, not YAML, YAML aliases, nested too deeply): see inputs.read_yaml."""
    from .inputs import read_yaml

    return read_yaml(path, what)
