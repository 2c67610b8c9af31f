"""The one exception type the CLI turns into a one-line message instead of a traceback."""


class ForgetkitError(Exception):
    """A problem with the user's input or environment, phrased as what is wrong and how to fix it."""
