"""The errors of the checkpoint reader."""


class TFCheckpointError(ValueError):
    """A checkpoint is missing, corrupt or uses an unsupported feature."""


class Corrupt(Exception):
    """Malformed bytes; re-raised as TFCheckpointError naming the file."""
