"""Regression tests for bad input found by probing: configs, the CLI's error path, hostile
images, garbled transport bodies, forged bundle parameters, replayed reports and a PSI setup
message that used to abort the process inside the native library."""
from __future__ import annotations

import io
import struct
import subprocess
import sys
import textwrap
import zlib

import numpy as np
import pytest
from PIL import Image

from e2eebench.evaluation.cli.app import main
from e2eebench.protocols import wire
from e2eebench.protocols.channel import PROVIDER, Channel, Ledger, MessageContext, PartyClock
from e2eebench.protocols.errors import (AuthenticationFailed, ConfigError, E2EEBenchError, InputError,
                                        MalformedMessage, ProtocolError, ReplayError)


def one_line_exit_2(args, capsys, code=2):
    rc = main(args)
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip()]
    assert rc == code, err
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# -- configs -----------------------------------------------------------------------------------
BAD_CONFIGS = [
    ("[run]\nseed = -1\n", "run.seed"),
    ("[run]\nseed = 9223372036854775808\n", "run.seed"),
    ("[run]\nschemes = [1]\n", "run.schemes"),
    ("[run]\nschemes = []\n", "run.schemes"),
    ("[workload]\nn_accounts = 2.5\n", "workload.n_accounts"),
    ("[workload]\ndays = nan\n", "workload.days"),
    ("[workload]\ndays = 1e9\n", "workload.days"),
    ("[workload]\ndays = 1000000000\n", "messages"),
    ("[workload]\nmessages_per_account_per_day = inf\n", "workload.messages_per_account_per_day"),
    ("run = 5\n", "[run]"),
    ("[run]\nn_benign = 1\n", "run.n_benign"),
    ("[run]\nn_benign = 2\n", "run.n_benign"),
    ("[run]\nn_known = 1e18\n", "run.n_known"),
    ("[run]\nn_known = 1000000000000000000\n", "run.n_known"),
    ("[run]\nprofile = \"nosuch\"\n", "run.profile"),
    ("[schemes.nosuch]\naction = \"block\"\n", "unknown scheme"),
    ("[schemes.on-device-list]\nnosuch = 1\n", "schemes.on-device-list.nosuch"),
    ("[run]\nthreshold = 999\n", "run.threshold"),
    ("[run]\nimage_size = 100000\n", "run.image_size"),
]


@pytest.mark.parametrize("text, needle", BAD_CONFIGS)
def test_bad_config_one_line_exit_2_nothing_written(text, needle, tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    db = tmp_path / "r.duckdb"
    line = one_line_exit_2(["run", "--config", str(cfg), "--db", str(db)], capsys)
    assert needle in line
    assert not db.exists()


def test_non_utf8_config_and_folder_as_config(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_bytes(b"[run]\ncorpus = \"\xff\xfe\"\n")
    assert "UTF-8" in one_line_exit_2(["run", "--config", str(cfg), "--db", str(tmp_path / "r.db")], capsys)
    assert "folder" in one_line_exit_2(["run", "--config", str(tmp_path), "--db", str(tmp_path / "r.db")], capsys)


def test_seed_too_large_and_missing_db_folder_refused_before_the_run(tmp_path, capsys, monkeypatch):
    import e2eebench.evaluation.api as api
    calls = []
    monkeypatch.setattr(api, "prepare", lambda *a, **k: calls.append(1))
    assert "run.seed" in one_line_exit_2(["run", "--quick", "--seed", str(2**63), "--db",
                                          str(tmp_path / "r.db")], capsys)
    assert "does not exist" in one_line_exit_2(["run", "--quick", "--db", str(tmp_path / "no" / "r.db")], capsys)
    assert calls == []


def test_api_raises_typed_error_for_bad_config():
    from e2eebench.evaluation.api import quick_config, run
    with pytest.raises(ConfigError, match="run.profile"):
        run(quick_config(schemes=["server-side"], profile="nosuch"), db=":memory:")


# -- the CLI's last resort -----------------------------------------------------------------------
def test_ctrl_c_exits_130_with_one_line(tmp_path, capsys, monkeypatch):
    import e2eebench.evaluation.api as api

    def interrupt(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(api, "prepare", interrupt)  # the first step of every run
    line = one_line_exit_2(["run", "--quick", "--schemes", "server-side", "--db", str(tmp_path / "r.db")],
                           capsys, code=130)
    assert "interrupted" in line
    assert not (tmp_path / "r.db").exists()


def test_unexpected_exception_is_one_line_exit_2(tmp_path, capsys, monkeypatch):
    import e2eebench.evaluation.api as api

    def boom(*a, **k):
        raise RuntimeError("something broke\nsecond line")
    monkeypatch.setattr(api, "prepare", boom)
    line = one_line_exit_2(["run", "--quick", "--schemes", "server-side", "--db", str(tmp_path / "r.db")], capsys)
    assert "RuntimeError" in line and "something broke" in line


# -- hostile images ------------------------------------------------------------------------------
def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(side: int = 100_000) -> bytes:
    """A valid PNG of a few hundred bytes that declares side x side pixels."""
    raw = zlib.compress(b"\x00" * 64)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
            + _png_chunk(b"IDAT", raw) + _png_chunk(b"IEND", b""))


def float_strip_tiff() -> bytes:
    """A 1x1 grey TIFF whose StripOffsets tag is typed FLOAT (Pillow raised TypeError)."""
    entries = [(256, 3, 1, 1), (257, 3, 1, 1), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 11, 1, struct.unpack("<I", struct.pack("<f", 122.0))[0]), (278, 3, 1, 1), (279, 4, 1, 1)]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries) + b"\0\0\0\0"
    return b"II*\x00" + struct.pack("<I", 8) + ifd + b"\x80" * 16


@pytest.mark.parametrize("data", [bomb_png(), float_strip_tiff()], ids=["bomb-png", "float-tiff"])
def test_hostile_images_are_typed_errors(data, tmp_path, capsys):
    with pytest.raises(Exception) as raw:   # what Pillow itself does with these bytes
        with Image.open(io.BytesIO(data)) as im:
            im.load()
    assert not isinstance(raw.value, E2EEBenchError)
    from e2eebench.clientside.hashing import decode_image
    with pytest.raises(InputError):
        decode_image(data)
    f = tmp_path / "x.img"
    f.write_bytes(data)
    assert "cannot read" in one_line_exit_2(["hash", str(f)], capsys)
    from e2eebench.clientside.hashing import get_hasher
    from e2eebench.protocols.baseline import ServerSide
    from e2eebench.protocols.messaging import MessageBody
    scheme = ServerSide(get_hasher("pdq"))
    with pytest.raises(MalformedMessage):
        scheme.provider_receive({"index": None, "ids": []}, b"", _ctx(), body=MessageBody("", data))


# -- schemes and the relay -----------------------------------------------------------------------
def _ctx(mid="m1", account="acct-0000", seed=1):
    return MessageContext(mid, account, Channel(Ledger()), PartyClock(), np.random.default_rng(seed))


@pytest.fixture(scope="module")
def small_db():
    from e2eebench.clientside.hashing import get_hasher
    from e2eebench.evaluation.data.corpora import get_corpus
    from e2eebench.server.database import KnownHashDatabase
    h = get_hasher("pdq")
    items = get_corpus("dead-leaves", seed=2, size=96).items(6)
    return h, KnownHashDatabase.from_images(items[:4], [h]), items


def _transport_env(scheme_name: str, inner: bytes):
    from e2eebench.protocols.messaging import MODE_TRANSPORT, Identity, Mailbox
    from e2eebench.protocols.registry import scheme_class
    from e2eebench.clientside.hashing import get_hasher
    from e2eebench.server.relay import PrekeyStore, Relay
    rng = np.random.default_rng(5)
    alice, bob, prov = (Identity.generate(n, rng.bytes) for n in ("acct-0000", "acct-0001", PROVIDER))
    store = PrekeyStore()
    for i in (alice, bob):
        store.publish(i.bundle())
    scheme = scheme_class(scheme_name)(get_hasher("pdq"))
    relay = Relay(scheme, {"index": None, "ids": [], "keys": None}, prov, store)
    env = Mailbox(alice, store.serve).session_to(PROVIDER, mode=MODE_TRANSPORT,
                                                 random_bytes=rng.bytes).encrypt(inner)
    return relay, env


@pytest.mark.parametrize("inner", [b"\xff\xfe\x00\x01", b"nobody\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00",
                                   b"no separator", PROVIDER.encode() + b"\x00\x01" + bytes(8)],
                         ids=["not-utf8", "unknown-recipient", "no-separator", "to-provider"])
def test_relay_garbled_transport_body_is_a_typed_error(inner):
    relay, env = _transport_env("server-side", inner)
    with pytest.raises(ProtocolError):
        relay.handle(env, _ctx())


def test_e2ee_relay_refuses_transport_envelopes():
    relay, env = _transport_env("hash-upload", b"acct-0001\x00\x01" + bytes(8))
    with pytest.raises(MalformedMessage, match="transport"):
        relay.handle(env, _ctx())


def test_on_device_list_root_covers_threshold_and_report_key(small_db):
    from e2eebench.protocols.ondevice import OnDeviceList
    h, db, _ = small_db
    scheme = OnDeviceList(h)
    _, bundle = scheme.provider_setup(db, _ctx("setup", PROVIDER))
    name, thr, key, root, blob = wire.unpack(b"ODL1", bundle, 5)
    scheme.device_load(bundle, "acct-0000", _ctx("bundle"))   # the genuine bundle loads
    for forged in ([name, wire.u32(200), key, root, blob],
                   [name, thr, bytes(32), root, blob],
                   [name, thr, bytes(range(32)), root, blob]):
        with pytest.raises(AuthenticationFailed):
            scheme.device_load(wire.pack(b"ODL1", forged), "acct-0000", _ctx("bundle"))


@pytest.mark.parametrize("name", ["on-device-list", "on-device-bloom", "on-device-lsh-bloom", "psi-client-learns"])
def test_sealed_report_replayed_for_the_same_message_is_refused(name, small_db):
    from e2eebench.protocols.registry import scheme_class
    h, db, items = small_db
    scheme = scheme_class(name)(h, 31, **({"min_hits": 1} if name == "on-device-lsh-bloom" else {}))
    pstate, bundle = scheme.provider_setup(db, _ctx("setup", PROVIDER))
    ch = Channel(Ledger())
    scheme.connect(ch, pstate, lambda account: None)
    dstate = scheme.device_load(bundle, "acct-0000", MessageContext("b", "acct-0000", ch, PartyClock(),
                                                                    np.random.default_rng(2)))
    ctx = MessageContext("m7", "acct-0000", ch, PartyClock(), np.random.default_rng(3))
    payload = scheme.device_prepare(dstate, items[0].image, ctx).payload
    assert payload, "a known image must yield a report"
    scheme.provider_receive(pstate, payload, ctx)
    with pytest.raises(ReplayError):
        scheme.provider_receive(pstate, payload, ctx)
    with pytest.raises(E2EEBenchError):   # and into another message: bound to its message id
        scheme.provider_receive(pstate, payload, MessageContext("m8", "acct-0000", ch, PartyClock(),
                                                                np.random.default_rng(4)))


PSI_ABORT = textwrap.dedent("""
    import hashlib, numpy as np
    from e2eebench.clientside.hashing import get_hasher
    from e2eebench.evaluation.data.corpora import get_corpus
    from e2eebench.protocols import wire
    from e2eebench.protocols.channel import Channel, Ledger, MessageContext, PartyClock
    from e2eebench.protocols.errors import MalformedMessage
    from e2eebench.protocols.psi_openmined import PsiClientLearns, _psi, bundle_root
    from e2eebench.server.database import KnownHashDatabase
    h = get_hasher("pdq")
    db = KnownHashDatabase.from_images(get_corpus("dead-leaves", seed=2, size=96).items(3), [h])
    ctx = lambda: MessageContext("x", "acct-0000", Channel(Ledger()), PartyClock(), np.random.default_rng(1))
    s = PsiClientLearns(h)
    _, bundle = s.provider_setup(db, ctx())
    name, setup_b, key, _ = wire.unpack(b"OMP1", bundle, 4)
    for field, value in (("hash_range", 0), ("hash_range", -5), ("div", 99), ("div", -1)):
        setup = _psi().ServerSetup(); setup.ParseFromString(setup_b)
        setattr(setup.gcs, field, value)
        forged = setup.SerializeToString()
        root = bundle_root([name, forged, key])   # the attacker recomputes the root
        try:
            st = s.device_load(wire.pack(b"OMP1", [name, forged, key, root]), "acct-0000", ctx())
            print("ACCEPTED", field, value)
        except MalformedMessage:
            print("refused", field, value)
""")


def test_psi_setup_with_zero_hash_range_is_refused_not_aborted():
    r = subprocess.run([sys.executable, "-c", PSI_ABORT], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (r.returncode, r.stderr[-500:])
    assert r.stdout.split("\n").count("ACCEPTED") == 0 and r.stdout.count("refused") == 4, r.stdout


def test_psi_client_learns_root_separates_its_fields(small_db):
    """Bytes moved from the setup message into the report key (same concatenation) are refused."""
    from e2eebench.protocols.psi_openmined import PsiClientLearns, bundle_root
    h, db, _ = small_db
    s = PsiClientLearns(h)
    _, bundle = s.provider_setup(db, _ctx("setup", PROVIDER))
    name, setup_b, key, root = wire.unpack(b"OMP1", bundle, 4)
    shifted = wire.pack(b"OMP1", [name, setup_b[:-1], setup_b[-1:] + key, root])
    with pytest.raises(AuthenticationFailed):
        s.device_load(shifted, "acct-0000", _ctx("bundle"))
    assert bundle_root([name, setup_b, key]) == root
