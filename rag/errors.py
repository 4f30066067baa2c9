"""User-facing errors: one family, one line each, naming the file or setting and the fix.

The CLI prints ``Error: <message>`` and exits non-zero; the UI shows ``st.error(message)``.
Programming errors are not wrapped: they still raise with a traceback.
"""


class RagError(Exception):
    """Base for every error a user can cause and fix."""


class ConfigError(RagError):
    """A setting has a value we cannot use."""


class MissingCollection(ConfigError):
    """RAG_COLLECTION names a collection the store does not have (read-only commands do not create it)."""


class ModelNotFound(RagError):
    """A configured model file or folder does not exist."""


class UnreadableFile(RagError):
    """A document cannot be read; the message starts with the file's name."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class StoreError(RagError):
    """The vector store cannot be opened or reached."""


class EmptyIndex(RagError):
    """There is nothing ingested to search."""


class PasswordRequired(UnreadableFile):
    """An encrypted PDF that opens only with a password: the UI asks for it, the CLI prompts for it."""


class Cancelled(RagError):
    """The user cancelled the operation; nothing half-written is left behind."""


class WriterBusy(StoreError):
    """Another process is writing to the embedded store and the caller chose not to wait."""
