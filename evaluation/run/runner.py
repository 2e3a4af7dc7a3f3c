"""The side-by-side runner: the same corpus, list and traffic through every scheme.

workload -> sender devices (hash, scheme's device role, encrypt) -> relay (scheme's
provider role) -> recipient devices (decrypt, check bit for bit) -> outcomes. Everything a
party computes is timed on that party's clock; everything that crosses is on the channel.
"""
from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from PIL import Image

from e2eebench.clientside.device import Messenger, encode_png
from e2eebench.clientside.hashing import Hasher, get_hasher
from e2eebench.protocols.channel import (DEVICE, PROVIDER, RECIPIENT, SERVER_PARTIES, Channel, Ledger,
                                         MessageContext, PartyClock, Transfer)
from e2eebench.protocols.errors import ConfigError, ProtocolError
from e2eebench.protocols.framework import Scheme
from e2eebench.protocols.messaging import Identity
from e2eebench.protocols.registry import scheme_class
from e2eebench.server.database import KnownHashDatabase
from e2eebench.server.relay import PrekeyStore, Relay
from e2eebench.evaluation.data.hard_negatives import HardNegativeConfig
from e2eebench.evaluation.data.workload import Message, Workload, WorkloadConfig, generate_workload

ThresholdSource = Callable[[Hasher, int], int]
"""Resolves a data-derived threshold ("calibrated") for a hasher and seed. The runner is handed
one (the API hands the accuracy stage's calibration) so that running never imports a
measurement stage."""


@dataclass
class RunConfig:
    """Everything that determines a run; stored with its results."""

    corpus: str = "dead-leaves"
    image_size: int = 256
    hasher: str = "pdq"
    n_known: int = 40
    n_benign: int = 120
    list_size: int | None = None         # pad the known list with synthetic hashes up to this (cost)
    seed: int = 0
    threshold: str = "default"          # "default", "calibrated" or an integer as text
    schemes: list[str] = field(default_factory=list)
    scheme_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    workload: WorkloadConfig = field(default_factory=WorkloadConfig)
    profile: str = "quick"
    attack_images: int | None = None    # images per in-run attack; None: by profile (quick 4, else 200)
    hard_negatives: HardNegativeConfig = field(default_factory=HardNegativeConfig)

    def to_dict(self) -> dict:
        from dataclasses import asdict
        return asdict(self)


@dataclass
class RunData:
    """The shared work: items, the known list, the traffic and the rendered images."""

    config: RunConfig
    hasher: Hasher
    known: list
    benign: list
    db: KnownHashDatabase
    workload: Workload
    images: dict[str, Image.Image]       # message id -> the image as sent
    png: dict[str, bytes]                # message id -> its encoded bytes
    threshold: int | None = None          # resolved before the run (see resolve_threshold)
    notice: str | None = None             # what the run changed to fit its corpus (sized down)
    _hashes: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _nearest: dict[str, int] | None = field(default=None, repr=False)   # see nearest_distances

    def image_hash(self, message_id: str) -> np.ndarray:
        """The run hasher's hash of an image as sent, computed once per run (for measurements)."""
        if message_id not in self._hashes:
            self._hashes[message_id] = self.hasher.hash(self.images[message_id])
        return self._hashes[message_id]


@dataclass
class Outcome:
    message_id: str
    account: str
    has_image: bool
    known: bool
    transform: str
    sent: bool
    delivered_ok: bool | None
    verdicts: dict[str, bool]
    detected: bool
    device_s: float
    server_s: float                 # CPU of every non-device party (SERVER_PARTIES), summed
    bytes_up: int
    bytes_down: int
    rounds: int                     # round trips the sending device waits for (see device_rounds)
    detection_bytes_up: int = 0     # what detection adds on the uplink: payload + extra transfers
    detection_bytes_down: int = 0   # what reaches the sending device because of detection
    server_rounds: int = 0          # flights between non-device parties (see server_rounds)
    party_s: dict[str, float] = field(default_factory=dict)   # CPU per party for this message
    leg_bytes: dict[str, int] = field(default_factory=dict)   # bytes per leg "sender->receiver"
    item_id: str | None = None      # the source image (repeats of one image share it)


@dataclass
class SchemeRun:
    scheme: Scheme
    outcomes: list[Outcome]
    ledger: Ledger
    channel: Channel
    setup_s: float
    bundle_bytes: int
    list_size: int
    sampled: tuple[int, int] | None = None   # (image messages run, image messages in the workload)
    device_extra_bytes: int = 0              # kept on a device beyond the bundle (own keys)
    synthetic: int = 0                       # synthetic list entries among list_size (cost padding)
    setup_party_s: dict[str, float] = field(default_factory=dict)   # setup CPU per party
    setup_leg_bytes: dict[str, int] = field(default_factory=dict)   # setup bytes per leg
    device_load_s: list[float] = field(default_factory=list)        # each device's bundle load CPU
    finalize_party_s: dict[str, float] = field(default_factory=dict)  # period-end CPU per party
    cpu_s: dict[str, float] = field(default_factory=dict)           # the whole run's CPU per party
    rule_check: tuple[int, int] | None = None  # (sampled verdicts equal to the plaintext rule, sampled)
    rule_outcomes: list[Outcome] | None = None  # every image message judged by the plaintext rule
    cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)  # measurements' indexes

    @property
    def name(self) -> str:
        return self.scheme.name


def leg(t: Transfer) -> str:
    """The name of the leg a transfer crossed: ``sender->receiver``."""
    return f"{t.sender}->{t.receiver}"


def leg_bytes(transfers: list[Transfer]) -> dict[str, int]:
    """Bytes per leg, every leg that carried anything."""
    out: dict[str, int] = {}
    for t in transfers:
        out[leg(t)] = out.get(leg(t), 0) + t.size
    return out


def device_rounds(transfers: list[Transfer]) -> int:
    """Round trips the sending device waits for: one for sending at all, plus one per flight that
    reaches it during the exchange (it must be online to receive, and usually answer, each)."""
    if not any(t.sender == DEVICE for t in transfers):
        return 0
    return 1 + len({t.flight for t in transfers if t.receiver == DEVICE})


def server_rounds(transfers: list[Transfer]) -> int:
    """Flights between non-device parties (server to server, dealer, enclave, escrow), counted in
    the order the simulation runs them: flights a deployment could send in parallel count apart."""
    return len({t.flight for t in transfers if t.sender in SERVER_PARTIES and t.receiver in SERVER_PARTIES})


def _delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU each party spent between two clock snapshots (parties that spent none are left out)."""
    return {p: after[p] - before.get(p, 0.0) for p in after if after[p] - before.get(p, 0.0) > 0}


def _seed_of(*parts: Any) -> int:
    return zlib.crc32("|".join(map(str, parts)).encode())


def prepare(config: RunConfig, progress: Callable[[str, int, int], None] | None = None,
            threshold_source: ThresholdSource | None = None) -> RunData:
    """Build corpus, known list, workload and the images every scheme will see, and resolve the
    matching threshold (``threshold_source`` answers "calibrated")."""
    from e2eebench.evaluation.data.corpora import get_corpus, split_known_benign
    from e2eebench.evaluation.data.transforms import parse_transform

    from dataclasses import replace
    from e2eebench.evaluation.data.hard_negatives import hard_negative_items
    hasher = get_hasher(config.hasher)
    if config.list_size is not None and config.list_size < config.n_known:
        raise ConfigError(f"list_size {config.list_size} is below n_known {config.n_known} "
                          "(it counts the real known items plus synthetic padding)")
    corpus = get_corpus(config.corpus, seed=config.seed, size=config.image_size)
    n_hard = int(round(config.n_benign * config.hard_negatives.fraction))
    n_known, n_plain = config.n_known, config.n_benign - n_hard
    notice = None
    if getattr(corpus, "finite", False):
        items = corpus.items(None)
        n_known, n_plain, n_hard, notice = fit_to_corpus(items, n_known, n_plain, n_hard, config)
    else:
        items = corpus.items(n_known + n_plain)
    known, benign = split_known_benign(items, n_known, n_plain, config.seed)
    benign = benign + hard_negative_items(n_hard, known, config.hard_negatives, config.seed, config.image_size)
    if notice:
        config = replace(config, n_known=n_known, n_benign=n_plain + n_hard)
    db = KnownHashDatabase.from_images(known, [hasher])
    if config.list_size is not None:
        if config.list_size < len(db):
            raise ConfigError(f"list_size {config.list_size} is below the {len(db)} known items")
        db = db.padded(config.list_size, seed=_seed_of(config.seed, "list padding"))
    wl = generate_workload([k.id for k in known], [b.id for b in benign], config.workload, config.seed)
    by_id = {it.id: it for it in known + benign}
    transforms: dict[str, Any] = {}
    images, png = {}, {}
    im_msgs = wl.image_messages
    for i, m in enumerate(im_msgs):
        t = transforms.get(m.transform) or transforms.setdefault(m.transform, parse_transform(m.transform))
        img = t.apply(by_id[m.item_id].image, seed=_seed_of(config.seed, m.id))
        images[m.id] = img
        png[m.id] = encode_png(img)
        if progress:
            progress("render", i + 1, len(im_msgs))
    threshold = resolve_threshold(config.threshold, hasher, config.seed, threshold_source)
    return RunData(config, hasher, known, benign, db, wl, images, png, threshold=threshold, notice=notice)


def fit_to_corpus(items: list, n_known: int, n_plain: int, n_hard: int,
                  config: RunConfig) -> tuple[int, int, int, str | None]:
    """Size a run down to a finite corpus: the known and benign counts shrink by one factor
    until a group-disjoint split fits; refused only when not even 1 known + 1 benign fits."""
    from e2eebench.evaluation.data.corpora import split_known_benign
    def fits(k: int, b: int) -> bool:
        try:
            split_known_benign(items, k, b, config.seed)
            return True
        except ConfigError:
            return False
    if fits(n_known, n_plain):
        return n_known, n_plain, n_hard, None
    if not fits(1, 1):
        groups = len({it.group for it in items})
        raise ConfigError(f"corpus {config.corpus!r} has {len(items)} images in {groups} groups: a run needs "
                          "at least one known and one benign image from different groups")
    scale = len(items) / max(1, n_known + n_plain)
    while True:
        k, b = max(1, int(n_known * scale)), max(1, int(n_plain * scale))
        if fits(k, b):
            break
        scale *= 0.9
    h = int(round(n_hard * k / max(1, n_known)))
    notice = (f"corpus {config.corpus!r} holds {len(items)} images, fewer than the {n_known} known + {n_plain} "
              f"benign asked for: using {k} known + {b} benign" + (f" + {h} hard negatives" if h else ""))
    return k, b, h, notice


def resolve_threshold(t: str, hasher: Hasher, seed: int, source: ThresholdSource | None = None) -> int:
    """A config's threshold as a number: the hasher's default, an integer, or what ``source``
    derives ("calibrated"), which must be handed in."""
    if t == "default":
        return hasher.default_threshold
    if t == "calibrated":
        if source is None:
            raise ConfigError("threshold 'calibrated' needs a calibration: run through "
                              "e2eebench.evaluation.api.run, or pass threshold_source to prepare()")
        return source(hasher, seed)
    try:
        return int(t)
    except ValueError:
        raise ConfigError(f"threshold must be 'default', 'calibrated' or an integer, got {t!r}") from None


def run_scheme(name: str, data: RunData, progress: Callable[[str, int, int], None] | None = None,
               params: dict[str, Any] | None = None) -> SchemeRun:
    cfg = data.config
    threshold = data.threshold if data.threshold is not None else \
        resolve_threshold(cfg.threshold, data.hasher, cfg.seed)
    scheme = scheme_class(name)(data.hasher, threshold, **(params or cfg.scheme_params.get(name, {})))
    ledger = Ledger(spill=True)   # the bytes on disk: a long run holds only the transfer records
    channel = Channel(ledger)
    clock = PartyClock()
    rng = np.random.default_rng([cfg.seed, _seed_of(name)])
    wl = data.workload
    idents = {a.id: Identity.generate(a.id, rng.bytes) for a in wl.accounts}
    prov = Identity.generate(PROVIDER, rng.bytes)
    prekeys = PrekeyStore()
    # the public identities users have verified (safety numbers / key transparency), so a provider
    # that serves a foreign key for an account, or stamps a name on a stranger's message, is refused
    directory = {n: i.identity for n, i in [*idents.items(), (PROVIDER, prov)]}

    def context(message_id: str, account: str, seed_key: str) -> MessageContext:
        """A context on this scheme's channel and clocks, seeded by (run seed, scheme, key)."""
        return MessageContext(message_id, account, channel, clock,
                              np.random.default_rng([cfg.seed, _seed_of(name, seed_key)]))

    setup_ctx = context("setup", PROVIDER, "setup")
    with channel.exchange("setup"):
        with clock.role(PROVIDER):
            pstate, bundle = scheme.provider_setup(data.db, setup_ctx)
    setup_party_s = clock.snapshot()
    setup_s = sum(setup_party_s.get(p, 0.0) for p in SERVER_PARTIES)
    devices: dict[str, Messenger] = {}
    load_s: list[float] = []
    for a in wl.accounts:
        ctx = context(f"bundle:{a.id}", a.id, a.id)
        before = clock.snapshot()
        with channel.exchange(ctx.message_id):
            received = channel.send(PROVIDER, DEVICE, "bundle", bundle)
            with clock.role(DEVICE):
                dstate = scheme.device_load(received, a.id, ctx)
        load_s.append(clock.snapshot().get(DEVICE, 0.0) - before.get(DEVICE, 0.0))
        devices[a.id] = Messenger(idents[a.id], prekeys, scheme, dstate, identities=directory)
        with channel.exchange(f"prekeys:{a.id}"):  # messaging's own cost, the same for every scheme
            devices[a.id].register(ctx)
    relay = Relay(scheme, pstate, prov, prekeys)

    scheme.connect(channel, pstate, lambda account: devices[account].state)

    messages = wl.messages
    sampled = None
    ruled = False
    k = sample_size(scheme, cfg.profile, len(data.db))
    if k is not None and len(wl.image_messages) > k:
        messages = sample_messages(wl, k, cfg.seed)
        sampled = (len(messages), len(wl.image_messages))
    elif scheme.quick_sample and len(wl.image_messages) > RULE_SAMPLE:
        # too slow for every message: a stratified sample through the protocol, checked against
        # the plaintext rule; effectiveness over all messages comes from the rule (labelled so)
        messages = stratified_sample(data, RULE_SAMPLE, threshold, cfg.seed)
        sampled = (len(messages), len(wl.image_messages))
        ruled = True
    raw: list[tuple] = []
    for i, m in enumerate(messages):
        ctx = context(m.id, m.sender, m.id)
        # the recipient's own judgement of what it sees (the simulated person, not the app):
        # read only by schemes whose detection waits on a user's report
        ctx.extra["recipient_judges_abusive"] = m.known
        before = clock.snapshot()
        ok: bool | None = None
        with channel.exchange(m.id):
            sent = devices[m.sender].send(m.recipient, ctx, text=m.text, image=data.images.get(m.id),
                                          image_bytes=data.png.get(m.id))
            if sent.envelope is not None:
                delivered = relay.handle(sent.envelope, ctx)
                with clock.role(RECIPIENT):
                    sender, body = devices[m.recipient].receive(delivered, ctx)
                ok = body == sent.body and sender in (m.sender, PROVIDER)
                if not ok:
                    raise ProtocolError(f"{name}: message {m.id} did not arrive bit-exact")
        # the envelope without the detection payload: what the message costs with no detection
        plain_env = len(sent.envelope or b"") - len(sent.payload)
        raw.append((m, sent.envelope is not None, ok, before, clock.snapshot(), channel.for_message(m.id), plain_env))
        if progress:
            progress(name, i + 1, len(messages))

    fin = context("finalize", PROVIDER, "fin")
    before_fin = clock.snapshot()
    with channel.exchange("finalize"):
        with clock.role(PROVIDER):
            scheme.provider_finalize(pstate, fin)
    finalize_party_s = _delta(before_fin, clock.snapshot())

    verdicts: dict[str, dict[str, bool]] = {}
    for x in ledger.learned:
        if x.kind == "verdict" and x.message_id:
            verdicts.setdefault(x.message_id, {})[x.party] = bool(x.value) or verdicts.get(x.message_id, {}).get(x.party, False)
    outcomes = []
    det_party = scheme.detector
    for m, was_sent, ok, before, after, transfers, plain_env in raw:
        v = verdicts.get(m.id, {})
        party_s = _delta(before, after)
        dev = party_s.get(DEVICE, 0.0)
        srv = sum(party_s.get(p, 0.0) for p in SERVER_PARTIES)
        # a recipient's report (user-report schemes) is upload too; nothing else leaves a recipient
        up = sum(t.size for t in transfers if t.sender in (DEVICE, RECIPIENT))
        down = sum(t.size for t in transfers if t.receiver in (DEVICE, RECIPIENT))
        det_down = sum(t.size for t in transfers if t.receiver == DEVICE
                       or (t.receiver == RECIPIENT and t.label != "deliver"))
        outcomes.append(Outcome(m.id, m.sender, m.has_image, m.known, m.transform, was_sent, ok, v,
                                bool(v.get(det_party, False)), dev, srv, up, down, device_rounds(transfers),
                                up - plain_env, det_down, server_rounds(transfers), party_s,
                                leg_bytes(transfers), m.item_id))
    extra = max((scheme.device_storage(d.state) for d in devices.values()), default=0)
    run = SchemeRun(scheme, outcomes, ledger, channel, setup_s, len(bundle), len(data.db))
    if ruled:
        run.rule_check = rule_check(data, outcomes, threshold)
        run.rule_outcomes = rule_outcomes(data, threshold)
    run.sampled = sampled
    run.device_extra_bytes = extra
    run.synthetic = data.db.synthetic
    run.setup_party_s = {p: t for p, t in setup_party_s.items() if t > 0}
    run.setup_leg_bytes = leg_bytes(channel.for_message("setup"))
    run.device_load_s = load_s
    run.finalize_party_s = finalize_party_s
    run.cpu_s = {p: t for p, t in clock.snapshot().items() if t > 0}
    return run


def sample_size(scheme: Scheme, profile: str, list_size: int) -> int | None:
    """How many image messages a scheme runs on, if not all: its quick sample in the quick
    profiles, its large-list sample once the list outgrows what every message can afford."""
    ks = []
    if profile in ("quick", "conformance") and scheme.quick_sample:
        ks.append(scheme.quick_sample)
    if scheme.list_sample and list_size > scheme.list_sample[0]:
        ks.append(scheme.list_sample[1])
    return min(ks) if ks else None


RULE_SAMPLE = 120          # messages a slow scheme runs outside the quick profile (>= 100)
NEAR_BAND = 8              # "near-threshold": nearest list entry within threshold +- this many bits


def nearest_distances(data: RunData) -> dict[str, int]:
    """Each image message's distance to its nearest list entry (the plaintext rule's input),
    computed once per run's data (every sampled scheme asks for it three times)."""
    if data._nearest is not None:
        return data._nearest
    db = np.unpackbits(np.asarray(data.db.hashes_for(data.hasher.name), np.uint8), axis=1).astype(np.float32)
    out = {}
    for m in data.workload.image_messages:
        h = np.unpackbits(np.asarray(data.image_hash(m.id), np.uint8)).astype(np.float32)
        out[m.id] = int((h @ (1 - db).T + (1 - h) @ db.T).min())
    data._nearest = out
    return out


def stratified_sample(data: RunData, k: int, threshold: int, seed: int) -> list[Message]:
    """Every near-threshold image message (|distance - threshold| <= NEAR_BAND), then known and
    benign ones in equal shares up to k (seeded), in traffic order."""
    d = nearest_distances(data)
    ims = data.workload.image_messages
    pick = {m.id for m in ims if abs(d[m.id] - threshold) <= NEAR_BAND}
    rng = np.random.default_rng([seed, 0x57A7])
    rest = [m for m in ims if m.id not in pick]
    for want_known in (True, False):
        pool = [m for m in rest if m.known == want_known]
        n = max(0, min(len(pool), (k - len(pick)) // (2 if want_known else 1)))
        pick |= {pool[i].id for i in rng.permutation(len(pool))[:n]}
    return [m for m in data.workload.messages if m.id in pick]


def rule_check(data: RunData, outcomes: list[Outcome], threshold: int) -> tuple[int, int]:
    """(sampled image messages whose protocol verdict equals the plaintext rule, sampled)."""
    d = nearest_distances(data)
    im = [o for o in outcomes if o.has_image]
    return sum(o.detected == (d[o.message_id] <= threshold) for o in im), len(im)


def rule_outcomes(data: RunData, threshold: int) -> list[Outcome]:
    """Every image message judged by the plaintext rule (nearest list entry within threshold);
    no cost fields: these outcomes are for effectiveness only."""
    d = nearest_distances(data)
    return [Outcome(m.id, m.sender, True, m.known, m.transform, True, None, {}, d[m.id] <= threshold,
                    0.0, 0.0, 0, 0, 0, item_id=m.item_id) for m in data.workload.image_messages]


def sample_messages(wl: Workload, k: int, seed: int) -> list[Message]:
    """A seeded sample of k image messages, half known (as far as there are), in traffic order."""
    rng = np.random.default_rng([seed, 0x5A3])
    known = [m for m in wl.image_messages if m.known]
    benign = [m for m in wl.image_messages if not m.known]
    nk = min(len(known), k // 2)
    nb = min(len(benign), k - nk)
    pick = {m.id for m in rng.permutation(np.array(known, dtype=object))[:nk]}
    pick |= {m.id for m in rng.permutation(np.array(benign, dtype=object))[:nb]}
    return [m for m in wl.messages if m.id in pick]


def run_comparison(config: RunConfig, progress: Callable[[str, int, int], None] | None = None,
                   data: RunData | None = None,
                   threshold_source: ThresholdSource | None = None) -> tuple[RunData, list[SchemeRun]]:
    if not config.schemes:
        raise ConfigError("no schemes selected")
    for n in config.schemes:
        scheme_class(n)
    data = data or prepare(config, progress, threshold_source)
    return data, [run_scheme(n, data, progress) for n in config.schemes]


def digest_of_view(ledger: Ledger, party: str) -> str:
    h = hashlib.sha256()
    for b in ledger.received_bytes(party):
        h.update(b)
    return h.hexdigest()
