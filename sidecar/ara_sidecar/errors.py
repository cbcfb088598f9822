"""Error types. A `UserError` is the user's to fix: the CLI prints its message on one line
and exits non-zero without a traceback; the HTTP service turns it into a 4xx."""


class AraError(Exception):
    """Base class of every error the sidecar raises on purpose."""


class UserError(AraError):
    """Bad input or configuration: the message says what is wrong and how to fix it."""


class BackendUnavailable(UserError):
    """A selected backend lacks its package, weight file or server."""


class NoFaceError(UserError):
    """No face was found in an avatar image."""


class Cancelled(AraError):
    """A render was cancelled between (or inside) stages."""
