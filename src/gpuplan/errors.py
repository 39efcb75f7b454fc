"""Errors meant for people: the CLI prints their message as one line and exits 2."""


class InputError(Exception):
    """A bad input from the user: the message names the input and what is accepted."""


def suggest(name: str, choices, n: int = 3) -> str:
    """' (did you mean: a, b?)' for the closest ids, or '' when nothing is close."""
    import difflib

    close = difflib.get_close_matches(name.lower(), list(choices), n=n, cutoff=0.5)
    return f" (did you mean: {', '.join(close)}?)" if close else ""


def read_yaml_file(path, what: str):
    """A user's YAML file, or one clear InputError naming it (missing, a directory, not YAML)."""
    from pathlib import Path

    import yaml

    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what} {path} does not exist or is not a file")
    try:
        return yaml.safe_load(p.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise InputError(f"{what} {path} is not valid YAML ({str(e).splitlines()[0]})") from None
