"""Seeded simulated traffic: accounts, conversations and messages over a period.

Offenders send known items, usually transformed by a realistic mix (re-encoding,
resizing, the occasional crop or screenshot); benign users send benign images with a
heavy-tailed (Zipf) popularity, so the same picture goes to many people, as memes do.
Base rates are parameters; the defaults are a small, fast profile, not a claim about
real traffic.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import numpy as np

from e2eebench.protocols.errors import ConfigError

TEXTS = ["hi", "see you later", "look at this", "ok", "haha", "on my way", "thanks!", "which one?"]


@dataclass(frozen=True)
class WorkloadConfig:
    n_accounts: int = 30
    offender_fraction: float = 0.1
    days: int = 7
    messages_per_account_per_day: float = 1.0
    image_fraction: float = 0.7          # share of messages carrying an image
    caption_fraction: float = 0.3        # share of image messages that also carry text
    offender_known_fraction: float = 0.6  # share of an offender's images that are known items
    zipf_a: float = 1.3                  # popularity exponent of benign images
    contacts_per_account: int = 4
    transformed_fraction: float = 0.7    # share of known shares that are transformed
    cover_items: bool = False            # send every list item and every benign image at least once
                                         # (first picks walk a seeded order), then by popularity

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.type in (bool, "bool"):
                if not isinstance(v, bool):
                    raise ConfigError(f"workload.{f.name} must be true or false, got {v!r}")
                continue
            integral = f.type in (int, "int")
            if isinstance(v, bool) or not isinstance(v, int if integral else (int, float)):
                kind = "an integer" if integral else "a number"
                raise ConfigError(f"workload.{f.name} must be {kind}, got {v!r}")
            if not math.isfinite(v):
                raise ConfigError(f"workload.{f.name} must be finite, got {v!r}")
            if v is None or (isinstance(v, (int, float)) and v < 0):
                raise ConfigError(f"workload.{f.name} must be non-negative, got {v!r}")
        for name in ("offender_fraction", "image_fraction", "caption_fraction",
                     "offender_known_fraction", "transformed_fraction"):
            if getattr(self, name) > 1:
                raise ConfigError(f"workload.{name} must be at most 1, got {getattr(self, name)}")
        if self.n_accounts < 2:
            raise ConfigError("workload.n_accounts must be at least 2")
        if self.zipf_a <= 1:
            raise ConfigError("workload.zipf_a must be greater than 1")

    @classmethod
    def from_dict(cls, d: dict) -> "WorkloadConfig":
        known = {f.name for f in fields(cls)}
        for k in d:
            if k not in known:
                raise ConfigError(f"unknown key workload.{k} (known: {', '.join(sorted(known))})")
        return cls(**d)


@dataclass(frozen=True)
class Account:
    id: str
    offender: bool


@dataclass(frozen=True)
class Message:
    id: str
    sender: str
    recipient: str
    day: int
    text: str
    item_id: str | None        # the corpus item the image derives from (None: text only)
    known: bool                # ground truth: the image derives from a known item
    transform: str             # transform spec applied before sending ("identity" if none)

    @property
    def has_image(self) -> bool:
        return self.item_id is not None


@dataclass
class Workload:
    accounts: list[Account]
    messages: list[Message]
    config: WorkloadConfig
    seed: int
    known_ids: list[str] = field(default_factory=list)
    benign_ids: list[str] = field(default_factory=list)

    @property
    def image_messages(self) -> list[Message]:
        return [m for m in self.messages if m.has_image]

    def summary(self) -> dict:
        im = self.image_messages
        return {"accounts": len(self.accounts), "offenders": sum(a.offender for a in self.accounts),
                "messages": len(self.messages), "image_messages": len(im),
                "known_image_messages": sum(m.known for m in im),
                "benign_image_messages": sum(not m.known for m in im),
                "distinct_benign_images": len({m.item_id for m in im if not m.known}),
                "distinct_known_images": len({m.item_id for m in im if m.known})}


def generate_workload(known_ids: list[str], benign_ids: list[str], config: WorkloadConfig | None = None,
                      seed: int = 0, offender_mix: list[tuple[str, float]] | None = None) -> Workload:
    cfg = config or WorkloadConfig()
    if not known_ids or not benign_ids:
        raise ConfigError("a workload needs at least one known and one benign item")
    if offender_mix is None:
        from e2eebench.evaluation.data.transforms import OFFENDER_MIX
        offender_mix = OFFENDER_MIX
    specs = [s for s, _ in offender_mix]
    weights = np.array([w for _, w in offender_mix], float)
    weights /= weights.sum()
    rng = np.random.default_rng([seed, 0xE2EE])
    n_off = max(1, int(round(cfg.n_accounts * cfg.offender_fraction))) if cfg.offender_fraction > 0 else 0
    accounts = [Account(f"acct-{i:04d}", i < n_off) for i in range(cfg.n_accounts)]
    order = rng.permutation(cfg.n_accounts)   # offenders are not the first ids
    accounts = [Account(f"acct-{j:04d}", accounts[i].offender) for j, i in enumerate(order)]
    contacts = {a.id: [accounts[j].id for j in rng.choice(
        [k for k in range(cfg.n_accounts) if accounts[k].id != a.id],
        size=min(cfg.contacts_per_account, cfg.n_accounts - 1), replace=False)] for a in accounts}
    ranks = np.arange(1, len(benign_ids) + 1, dtype=float)
    pop = ranks ** -cfg.zipf_a
    pop /= pop.sum()
    benign_order = rng.permutation(len(benign_ids))
    # coverage: the first picks on each side walk a seeded order of all items, so every item is
    # sent once (as far as the traffic allows) before popularity takes over; the draws from
    # ``rng`` are the same either way, so the traffic's shape does not change
    cover_b = list(rng.permutation(len(benign_ids))) if cfg.cover_items else []
    cover_k = list(rng.permutation(len(known_ids))) if cfg.cover_items else []
    messages: list[Message] = []
    for day in range(cfg.days):
        for a in accounts:
            for _ in range(rng.poisson(cfg.messages_per_account_per_day)):
                to = contacts[a.id][rng.integers(len(contacts[a.id]))]
                mid = f"m{len(messages):06d}"
                if rng.random() >= cfg.image_fraction:
                    messages.append(Message(mid, a.id, to, day, TEXTS[rng.integers(len(TEXTS))],
                                            None, False, "identity"))
                    continue
                text = TEXTS[rng.integers(len(TEXTS))] if rng.random() < cfg.caption_fraction else ""
                if a.offender and rng.random() < cfg.offender_known_fraction:
                    item = known_ids[rng.integers(len(known_ids))]
                    if cover_k:
                        item = known_ids[cover_k.pop()]
                    spec = (specs[rng.choice(len(specs), p=weights)]
                            if rng.random() < cfg.transformed_fraction else "identity")
                    messages.append(Message(mid, a.id, to, day, text, item, True, spec))
                else:
                    item = benign_ids[benign_order[rng.choice(len(benign_ids), p=pop)]]
                    if cover_b:
                        item = benign_ids[cover_b.pop()]
                    spec = "jpeg:q=85" if rng.random() < 0.3 else "identity"
                    messages.append(Message(mid, a.id, to, day, text, item, False, spec))
    return Workload(accounts, messages, cfg, seed, list(known_ids), list(benign_ids))
