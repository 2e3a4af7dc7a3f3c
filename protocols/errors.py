"""Typed errors shared by every layer.

Every error a user can cause derives from :class:`E2EEBenchError`; the CLI turns
any of them into one line on stderr and exit code 2, so a test can rely on the
type in the API and on the exit code at the shell.
"""
from __future__ import annotations


class E2EEBenchError(Exception):
    """Base of every error the test bed raises on purpose."""


class UnknownNameError(E2EEBenchError, KeyError):
    """A scheme, hasher, corpus, transform or metric name that is not registered."""

    def __init__(self, kind: str, name: str, known: list[str] | tuple[str, ...] = ()):
        self.kind, self.name, self.known = kind, name, tuple(known)
        hint = f" (known: {', '.join(sorted(self.known))})" if self.known else ""
        super().__init__(f"unknown {kind} {name!r}{hint}")

    def __str__(self) -> str:  # KeyError would quote the message otherwise
        return self.args[0]


class ConfigError(E2EEBenchError, ValueError):
    """A malformed configuration value, spec string or parameter; names the key."""


class InputError(E2EEBenchError, ValueError):
    """Unreadable image, folder or file, or a hash of the wrong length."""


class ProtocolError(E2EEBenchError):
    """A message that does not parse or does not verify: malformed, forged, replayed."""


class MalformedMessage(ProtocolError, ValueError):
    """Bytes that do not follow the wire format (length, version, encoding)."""


class AuthenticationFailed(ProtocolError):
    """An AEAD tag, signature or binding that does not verify: tampering or forgery."""


class ReplayError(ProtocolError):
    """A message (or voucher) that was already accepted once."""


class IdentityMismatch(AuthenticationFailed):
    """A peer presents an identity (X25519 identity key, Ed25519 signing key) other than the one
    the directory lists or that was pinned for that name."""
