"""The one exception type for bad input: its message is a single sentence naming the key."""


class ConfigError(ValueError):
    """Bad input detected before training; the message names the config key and what is allowed."""
