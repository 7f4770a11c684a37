"""The one exception type for user mistakes: the CLI prints its message as one line and exits 2."""

import difflib


class FovealError(Exception):
    """A problem with the user's input (path, config key, data, weights), not a bug in foveal."""


def did_you_mean(word: str, choices) -> str:
    """' (did you mean 'x'?)' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
