"""The few domain exceptions FedSynth raises, in one place."""

from __future__ import annotations


class FedSynthError(Exception):
    """Base class: an error a user can act on; the message says what to do next."""


class ConfigError(FedSynthError, ValueError):
    """A run_config or node_config value is missing or invalid."""


class IntakeError(FedSynthError):
    """A site input cannot be used. ``quarantine`` asks for a copy to be kept for review.

    Args:
        reason: why, in words a site's IT team can act on (never a header value).
        quarantine: keep the file in the quarantine folder rather than only rejecting it.
    """

    def __init__(self, reason: str, quarantine: bool = False) -> None:
        super().__init__(reason)
        self.quarantine = quarantine
