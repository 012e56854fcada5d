"""What a worker is told beyond the environment: its knobs, with production defaults.

The environment (endpoint, edition, version, on/off) is :class:`outbox.config.Config`,
read once like everywhere else; :class:`Options` holds only what the worker's own
command line sets, so nothing is copied from one to the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from outbox import maintenance
from worker.retry import RetryPolicy
from worker.sender import DEFAULT_ATTEMPT_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT
from worker.transport import MAX_ANSWER_BYTES


@dataclass(frozen=True)
class Options:
    """The worker's own settings (``outbox-worker --help`` shows each)."""

    retry: RetryPolicy = field(default_factory=RetryPolicy)
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    #: One attempt (connect, send, answer) is over after this long, whatever the receiver does.
    attempt_timeout: float = DEFAULT_ATTEMPT_TIMEOUT
    max_answer: int = MAX_ANSWER_BYTES
    retention: int = maintenance.DEFAULT_RETENTION_SECONDS
    max_rows: int = maintenance.DEFAULT_MAX_ROWS
    chunk: int = maintenance.DEFAULT_CHUNK
    #: The pause between two maintenance transactions (SQLite's busy handler is not fair).
    chunk_pause: float = 0.025
    checkpoint_every: float = 30.0
    maintenance_every: float = 600.0
    lease_poll: float = 30.0
    wait_for_lease: bool = False

    @property
    def lease_ttl(self) -> float:
        """Longer than the longest gap between renewals: one attempt plus one wait, thrice."""
        return max(120.0, 3 * (self.retry.max_wait + self.connect_timeout + self.attempt_timeout))
