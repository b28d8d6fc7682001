"""The project's exception tree.

Every error a performer can act on derives from ``MetaDJError`` and carries a message that says what
happened, the value involved and what to do. The CLI prints ``error: <message>`` and exits 1.

    MetaDJError
     ├── ConfigError                 bad command-line value, URL or setting
     ├── VideoError                  a video output or input that cannot work here
     │    ├── VideoOutputError       no virtual camera backend, a recording file that cannot be written
     │    └── VideoInputError        a webcam that is missing or busy, a video file that cannot be read
     └── ScopeError                  anything between the bridge and a Scope server
          ├── ScopeConnectionError   cannot reach the server (down, DNS, refused, timeout)  [transient]
          ├── ScopeTLSError          the TLS handshake failed (certificate, https to an http port)
          ├── ScopeNotFoundError     the URL answers, but the path is wrong (404)
          ├── ScopeNotScopeError     something answers that is not a Scope server
          ├── ScopeHTTPError         Scope answered with an unexpected status
          ├── PipelineLoadError      Scope could not load the pipeline
          │    └── PipelineLoadTimeout   the load did not finish in time
          ├── ScopeSessionError      the WebRTC session could not be set up or was lost
          └── ParameterError         a parameter value the pipeline would not accept
"""

from __future__ import annotations


class MetaDJError(Exception):
    """Root of every error metadj-bridge raises on purpose."""


class ConfigError(MetaDJError):
    """A setting, flag or URL that cannot be used as given."""


class VideoError(MetaDJError):
    """A video output or input that cannot work here."""


class VideoOutputError(VideoError):
    """A video output cannot be used (no virtual camera backend, an unwritable recording path)."""


class VideoInputError(VideoError):
    """A video input cannot be used (a missing or busy webcam, an unreadable video file)."""


class ScopeError(MetaDJError):
    """Something went wrong talking to a Scope server."""

    #: Whether trying again later may succeed (server starting, network blip).
    transient: bool = False


class ScopeConnectionError(ScopeError):
    """The server could not be reached at all."""

    transient = True


class ScopeTLSError(ScopeError):
    """The TLS handshake with the server failed."""


class ScopeNotFoundError(ScopeError):
    """The server answered 404: the URL or path is wrong."""


class ScopeNotScopeError(ScopeError):
    """The server answered, but it is not a Scope server."""


class ScopeHTTPError(ScopeError):
    """Scope answered with a status the bridge did not expect."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        # 5xx and 429 are worth retrying; 4xx are not.
        self.transient = status is None or status >= 500 or status == 429


class PipelineLoadError(ScopeError):
    """Scope reported that the pipeline failed to load."""

    transient = True


class PipelineLoadTimeout(PipelineLoadError):
    """The pipeline did not finish loading in time."""


class ScopeSessionError(ScopeError):
    """The WebRTC session could not be established or was lost."""

    transient = True


class ParameterError(MetaDJError, ValueError):
    """A parameter value that Scope's pipeline would not accept."""
