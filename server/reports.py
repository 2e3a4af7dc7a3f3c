"""The provider's report queue: reports per account, and accounts over a reporting threshold."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ReportQueue:
    """Collects what the provider could act on; ``account_threshold`` mirrors Apple's t."""

    account_threshold: int = 1
    reports: dict[str, list[tuple[str, Any]]] = field(default_factory=lambda: defaultdict(list))

    def file(self, account: str, message_id: str, evidence: Any) -> None:
        self.reports[account].append((message_id, evidence))

    def flagged_accounts(self) -> list[str]:
        return sorted(a for a, r in self.reports.items() if len(r) >= self.account_threshold)

    def __len__(self) -> int:
        return sum(len(r) for r in self.reports.values())
