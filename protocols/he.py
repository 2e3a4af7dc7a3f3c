"""Homomorphic matching schemes: ``he-hamming`` (BFV, exact fuzzy rule) and ``he-cosine`` (CKKS).

The device encrypts its hash (or PDQ's real-valued features) under the key holder's key; the
provider evaluates the match against its list on ciphertexts (:mod:`crypto_he`) and sends the
masked, aggregated result to the key holder, who learns only the verdict and forwards it.

Key placement (parameter ``key_holder``):

``device``       every device generates its own key set, lazily, on its first image message,
                 and uploads its public bundle (parameters, public, relinearization and two
                 Galois keys, ~26.7 MB for BFV) to the provider alongside that message (a direct
                 device -> provider transfer, on that message's channel record; the payload
                 announces it with a flag). The device decrypts the verdict and reports it
                 in a sealed verdict message; the provider must trust the client to be honest.
                 (The key upload is a ``ctx.call`` to the provider's endpoint, which registers
                 the device's key set; the result round is a ``ctx.call`` from the provider to
                 the device's endpoint, ``device_answer``, which decrypts and returns the sealed
                 verdict. Both rounds are counted on the message's channel record.)
``third-party``  a separate party (e.g. the EU Centre) generates one key set at setup and sends
                 the public bundle to the provider once; every device downloads only the
                 parameters and the public key (~1.3 MB BFV) and encrypts with it. The provider
                 sends the masked result to the third party, which learns the verdict and tells
                 the provider. Provider and third party must not collude (the third party could
                 decrypt queries).

Payloads are sealed to the provider's X25519 key (HPKE-style, bound to account and message):
garbled or replayed payloads raise before any homomorphic evaluation, and a random ciphertext
can never be evaluated into a spurious match.

``he-cosine`` uses PDQ's 256 real values before binarisation, centred by their median (the
value PDQ thresholds at) and unit-normalised. Its threshold ``similarity`` defaults to
cos(pi * 31 / 256) = 0.9286: for jointly Gaussian coordinates with correlation rho the sign
bits differ with probability arccos(rho) / pi (Sheppard), so an expected Hamming distance of
31 of 256 bits corresponds to cosine 0.9286. It is "approximate": verdicts are not the
Hamming rule (docs/he.md reports how often they agree).
"""
from __future__ import annotations

from abc import abstractmethod

import json
import math
from typing import Any

import numpy as np
from PIL import Image

from e2eebench.protocols import wire
from e2eebench.protocols.channel import DEVICE, PROVIDER, RECIPIENT, THIRD_PARTY, MessageContext
from e2eebench.protocols.crypto import KeyPair, open_sealed, seal, sha256
from e2eebench.protocols.crypto_he import (BfvParams, CkksKeyHolder, CkksMatcher, CkksParams,
                                           CkksQueryEncryptor, HammingKeyHolder, HammingMatcher,
                                           HammingQueryEncryptor, check_device_bundle, device_bundle_of,
                                           unit_normalise)
from e2eebench.protocols.errors import (AuthenticationFailed, ConfigError, MalformedMessage,
                                        ReplayError)
from e2eebench.protocols.framework import Param, Prepared, Scheme, register
from e2eebench.server.database import KnownHashDatabase

PAYLOAD_INFO = b"e2eebench he query v1"
VERDICT_INFO = b"e2eebench he verdict v1"
TP_VERDICT_INFO = b"e2eebench he third-party verdict v1"
KEY_HOLDERS = ("device", "third-party")
PDQ_EQUIVALENT_SIMILARITY = round(math.cos(math.pi * 31 / 256), 4)  # 0.9286


def _key_holder_param(default: str) -> Param:
    return Param("key_holder", default, "who holds the secret key: device or third-party", KEY_HOLDERS, str)


class _HeBase(Scheme):
    """Shared roles; subclasses provide the engine (key holder, encryptor, matcher, verdict)."""

    family = "he"
    eu_category = "encryption"
    verdict_to = "key holder (device or third party), then the provider"
    leakage = {DEVICE: ("verdict",), THIRD_PARTY: ("verdict", "count"), PROVIDER: ("verdict",)}
    leakage_text = {DEVICE: "the verdict (device key placement)",
                    THIRD_PARTY: "verdict and number of list entries within threshold (third-party key)",
                    PROVIDER: "the verdict per image message"}
    quick_sample = 6
    MAGIC = b"HE??"

    # -- engine hooks (BFV or CKKS; every concrete scheme implements all of them) ---------
    @abstractmethod
    def engine_params(self) -> Any:
        """Engine hook."""

    @abstractmethod
    def new_key_holder(self, params: Any) -> Any:
        """Engine hook."""

    @abstractmethod
    def new_encryptor(self, device_bundle: bytes, params: Any) -> Any:
        """Engine hook."""

    @abstractmethod
    def list_values(self, db: KnownHashDatabase) -> np.ndarray:
        """Engine hook."""

    @abstractmethod
    def new_matcher(self, public_bundle: bytes, values: np.ndarray, params: Any, rng) -> Any:
        """Engine hook."""

    @abstractmethod
    def query_value(self, image: Image.Image) -> np.ndarray:
        """Engine hook."""

    @abstractmethod
    def decrypt(self, holder: Any, result: bytes) -> tuple[bool, int]:
        """Engine hook."""

    @property
    def mode(self) -> str:
        return self.p["key_holder"]

    # -- roles ---------------------------------------------------------------------------
    def provider_setup(self, db: KnownHashDatabase, ctx: MessageContext) -> tuple[Any, bytes]:
        values = self.list_values(db)
        if len(values) == 0:
            raise ConfigError(f"{self.name}: the known list is empty")
        params = self.engine_params()
        prov = KeyPair.generate(ctx.random_bytes)
        rng = np.random.default_rng(ctx.rng.integers(0, 2**63))
        state = {"prov": prov, "values": values, "params": params, "rng": rng, "seen": set(),
                 "matchers": {}, "holder": None}
        fields = [self.hasher.name.encode(), str(self.threshold).encode(), self.mode.encode(),
                  prov.public_bytes]
        if self.mode == "third-party":
            with ctx.role(THIRD_PARTY):
                holder = self.new_key_holder(params)
                sent = ctx.send(THIRD_PARTY, PROVIDER, "he public keys", holder.public_bundle())
                # the key that authenticates its verdicts (HPKE Auth mode): without it anyone
                # on the link could flip a verdict bit or forge a verdict
                tp_keys = KeyPair.generate(ctx.random_bytes)
                state["tp_pk"] = ctx.send(THIRD_PARTY, PROVIDER, "he verdict key", tp_keys.public_bytes)
            state["holder"] = holder  # third party's own state, used only under its role
            state["tp_keys"] = tp_keys
            state["matchers"][None] = self.new_matcher(sent, values, params, rng)
            fields.append(device_bundle_of(sent))
        else:
            fields.append(b"")
        # the digest a provider publishes: every device can check it holds the same key and list
        # parameters as everyone else (a swapped provider key would read every sealed query)
        return state, wire.pack(self.MAGIC, fields + [sha256(wire.pack(self.MAGIC, fields))])

    def device_load(self, bundle: bytes, account: str, ctx: MessageContext) -> Any:
        *fields, digest = wire.unpack(self.MAGIC, bundle, 6, f"{self.name} bundle")
        if sha256(wire.pack(self.MAGIC, fields)) != digest:
            raise AuthenticationFailed(f"{self.name} bundle: contents do not match its digest")
        name, thr, mode, prov_pk, dev_bundle = fields
        if name.decode(errors="replace") != self.hasher.name or thr != str(self.threshold).encode():
            raise MalformedMessage(f"{self.name} bundle is for another hasher or threshold")
        if mode.decode(errors="replace") != self.mode or len(prov_pk) != 32:
            raise MalformedMessage(f"{self.name} bundle: key placement or provider key does not match")
        params = self.engine_params()
        state = {"prov_pk": prov_pk, "params": params, "account": account, "holder": None,
                 "keys_sent": False, "encryptor": None}
        if self.mode == "third-party":
            # checked now (framing + checksum); the SEAL context is built on the first image
            # message, so devices that never send one do not pay for it
            check_device_bundle(dev_bundle)
            state["device_bundle"] = dev_bundle
        elif dev_bundle:
            raise MalformedMessage(f"{self.name} bundle: unexpected public key for device placement")
        return state

    def device_storage(self, state: Any) -> int:
        holder = state.get("holder") if isinstance(state, dict) else None
        if holder is None or not hasattr(holder, "secret_key_bytes"):
            return 0
        return holder.secret_key_bytes()

    def device_prepare(self, state: Any, image: Image.Image, ctx: MessageContext) -> Prepared:
        x = self.query_value(image)
        keys_flag = b"\x00"
        if self.mode == "device":
            if state["holder"] is None:  # lazily: only devices that send an image make keys
                state["holder"] = self.new_key_holder(state["params"])
            if not state["keys_sent"]:
                # the public bundle goes to the provider directly (not in the envelope, which
                # the recipient downloads too); the transfer is on this message's record
                ack = ctx.call(DEVICE, PROVIDER, "he public keys", state["holder"].public_bundle())
                if ack != b"registered":
                    raise MalformedMessage(f"{self.name}: the provider did not register the key set")
                state["keys_sent"] = True
                keys_flag = b"\x01"
            query = state["holder"].encrypt_query(x)
        else:
            if state["encryptor"] is None:
                state["encryptor"] = self.new_encryptor(state["device_bundle"], state["params"])
            query = state["encryptor"].encrypt_query(x)
        body = wire.pack(self.MAGIC, [keys_flag, query])
        return Prepared(seal(state["prov_pk"], body, info=PAYLOAD_INFO, ad=ctx.binding(),
                             random_bytes=ctx.random_bytes))

    def provider_receive(self, state: Any, payload: bytes, ctx: MessageContext, body: Any = None) -> None:
        if not payload:
            return
        flag, query = wire.unpack(self.MAGIC, open_sealed(state["prov"], payload, info=PAYLOAD_INFO,
                                                          ad=ctx.binding()), 2, f"{self.name} payload")
        if flag not in (b"\x00", b"\x01"):
            raise MalformedMessage(f"{self.name} payload: bad key flag")
        if flag == b"\x01" and ctx.account not in state["matchers"]:
            raise MalformedMessage(f"{self.name}: payload announces a key set the provider did not receive")
        key = (ctx.account, ctx.message_id)
        if key in state["seen"]:
            raise ReplayError(f"{self.name}: query for this message was already evaluated")
        state["seen"].add(key)
        if self.mode == "device":
            matcher = state["matchers"].get(ctx.account)
            if matcher is None:
                raise MalformedMessage(f"{self.name}: no key set registered for {ctx.account}")
        else:
            if flag == b"\x01":
                raise MalformedMessage(f"{self.name}: a device sent keys under third-party placement")
            matcher = state["matchers"][None]
        result = matcher.evaluate(query)
        if self.mode == "device":
            match = self._device_round(state, result, ctx)
        else:
            got = ctx.send(PROVIDER, THIRD_PARTY, "he result", result)
            with ctx.role(THIRD_PARTY):
                m, count = self.decrypt(state["holder"], got)
                ctx.opened(THIRD_PARTY, "he result", bytes([m]) + int(count).to_bytes(4, "big"))
                ctx.verdict(THIRD_PARTY, m)
                ctx.learn(THIRD_PARTY, "match_count", count)
                back = ctx.send(THIRD_PARTY, PROVIDER, "he verdict", self._seal_tp_verdict(state, m, ctx))
            match = self._open_tp_verdict(state, back, ctx)
        ctx.verdict(PROVIDER, match)
        if match:
            ctx.learn(PROVIDER, "report", {"message": ctx.message_id, "account": ctx.account})

    def provider_answer(self, state: Any, label: str, request: bytes, ctx: MessageContext) -> bytes:
        """Device placement: a device registers its public key set (bytes from the channel)."""
        if label != "he public keys" or self.mode != "device":
            raise MalformedMessage(f"{self.name}: unexpected request {label!r}")
        # a device's (new) key set replaces its old one
        state["matchers"][ctx.account] = self.new_matcher(request, state["values"], state["params"], state["rng"])
        return b"registered"

    def device_answer(self, state: Any, label: str, request: bytes, ctx: MessageContext) -> bytes:
        """Device placement: decrypt the masked result, learn the verdict, seal it to the provider."""
        if label != "he result" or state.get("holder") is None:
            raise MalformedMessage(f"{self.name}: {ctx.account} holds no key for this result")
        m, count = self.decrypt(state["holder"], request)
        ctx.opened(DEVICE, "he result", bytes([m]) + int(count).to_bytes(4, "big"))
        ctx.verdict(DEVICE, m)
        ctx.learn(DEVICE, "match_count", count)
        report = json.dumps({"message": ctx.message_id, "account": ctx.account, "match": m},
                            sort_keys=True).encode()
        return seal(state["prov_pk"], report, info=VERDICT_INFO, ad=ctx.binding(), random_bytes=ctx.random_bytes)

    def _device_round(self, state: Any, result: bytes, ctx: MessageContext) -> bool:
        """Result to the device, which decrypts and reports its verdict sealed to the provider."""
        back = ctx.call(PROVIDER, DEVICE, "he result", result)
        return self._open_verdict(state, back, ctx)

    def _seal_tp_verdict(self, state: Any, match: bool, ctx: MessageContext) -> bytes:
        """Third-party placement: the third party's verdict, sealed to the provider in HPKE Auth
        mode (only the third party's key makes it) and bound to account and message."""
        body = wire.pack(self.MAGIC, [ctx.message_id.encode(), bytes([match])])
        return seal(state["prov"].public_bytes, body, info=TP_VERDICT_INFO, ad=ctx.binding(),
                    random_bytes=ctx.random_bytes, sender=state["tp_keys"])

    def _open_tp_verdict(self, state: Any, back: bytes, ctx: MessageContext) -> bool:
        """The provider opens the third party's verdict (bytes from the third party's link)."""
        body = open_sealed(state["prov"], back, info=TP_VERDICT_INFO, ad=ctx.binding(),
                           sender_public=state["tp_pk"])
        mid, bit = wire.unpack(self.MAGIC, body, 2, f"{self.name} verdict")
        if mid != ctx.message_id.encode() or bit not in (b"\x00", b"\x01"):
            raise AuthenticationFailed(f"{self.name}: verdict is for another message")
        return bit == b"\x01"

    def _open_verdict(self, state: Any, back: bytes, ctx: MessageContext) -> bool:
        """The provider opens the device's sealed verdict report (bytes from the device)."""
        try:
            rep = json.loads(open_sealed(state["prov"], back, info=VERDICT_INFO, ad=ctx.binding()))
        except ValueError:
            raise MalformedMessage(f"{self.name}: verdict report does not parse") from None
        if not isinstance(rep, dict):
            raise MalformedMessage(f"{self.name}: verdict report is not a JSON object")
        if rep.get("message") != ctx.message_id or rep.get("account") != ctx.account \
                or not isinstance(rep.get("match"), bool):
            raise AuthenticationFailed(f"{self.name}: verdict report is for another message")
        return rep["match"]


class _HammingBase(_HeBase):
    matching = "fuzzy"
    MAGIC = b"HEH1"

    def engine_params(self) -> BfvParams:
        return BfvParams(threshold=self.threshold, bits=self.hasher.bits)

    def new_key_holder(self, params: BfvParams) -> HammingKeyHolder:
        return HammingKeyHolder(params)

    def new_encryptor(self, device_bundle: bytes, params: BfvParams) -> HammingQueryEncryptor:
        return HammingQueryEncryptor(device_bundle, params)

    def list_values(self, db: KnownHashDatabase) -> np.ndarray:
        return db.hashes_for(self.hasher.name)

    def new_matcher(self, public_bundle: bytes, values: np.ndarray, params: BfvParams, rng) -> HammingMatcher:
        return HammingMatcher(public_bundle, values, params, rng)

    def query_value(self, image: Image.Image) -> np.ndarray:
        return self.hasher.hash(image)

    def decrypt(self, holder: HammingKeyHolder, result: bytes) -> tuple[bool, int]:
        d = holder.decrypt_detail(result)
        return d.match, d.zero_slots


@register
class HeHamming(_HammingBase):
    name = "he-hamming"
    parties = (DEVICE, PROVIDER, RECIPIENT)
    trust = ("honest client: the device holds the secret key, decrypts the verdict and reports it "
             "(a modified client can suppress it); provider sees only ciphertexts")
    description = ("BFV (SEAL via TenSEAL): encrypted hash bits, Hamming distance to every list entry, "
                   "encrypted threshold test, masked OR; key on the device, which reports the verdict")
    params = (_key_holder_param("device"),)


@register
class HeHamming3p(_HammingBase):
    name = "he-hamming-3p"
    parties = (DEVICE, PROVIDER, THIRD_PARTY, RECIPIENT)
    verdict_to = "third party (key holder), then the provider"
    trust = ("provider and third party (key holder, e.g. EU Centre) do not collude; "
             "semi-honest provider; honest query encryption")
    description = ("BFV as he-hamming, but a third party holds the secret key, decrypts the masked "
                   "result and tells the provider the verdict; devices hold only the public key")
    params = (_key_holder_param("third-party"),)


def _centred(f: np.ndarray) -> np.ndarray:
    """PDQ thresholds its features at their median: centre there, then unit-normalise."""
    f = np.asarray(f, dtype=np.float64)
    return unit_normalise(f - np.median(f, axis=-1, keepdims=True), "hash features")


@register
class HeCosine(_HeBase):
    name = "he-cosine"
    parties = (DEVICE, PROVIDER, THIRD_PARTY, RECIPIENT)
    matching = "approximate"
    trust = ("third-party placement: provider and key holder do not collude; the key holder sees "
             "r * |cos - theta| per list slot (unknown r in [1, 256], permuted); device placement: honest client")
    description = ("CKKS (SEAL via TenSEAL): cosine similarity of median-centred PDQ features to every "
                   "list entry, masked sign test; approximate (not the Hamming rule)")
    params = (_key_holder_param("third-party"),
              Param("similarity", PDQ_EQUIVALENT_SIMILARITY,
                    "cosine threshold; 0.9286 = cos(pi*31/256) behaves like PDQ's 31", None, float))
    quick_sample = 24
    MAGIC = b"HEC1"

    def __init__(self, hasher, threshold=None, **params):
        super().__init__(hasher, threshold, **params)
        if not 0.0 < self.p["similarity"] <= 1.0:
            raise ConfigError(f"parameter 'similarity' must lie in (0, 1], got {self.p['similarity']}")

    def engine_params(self) -> CkksParams:
        return CkksParams(dim=self._dim, threshold=self.p["similarity"])

    @property
    def _dim(self) -> int:
        return self.hasher.bits  # PDQ: 256 features for 256 bits; pHash: 64 for 64

    def new_key_holder(self, params: CkksParams) -> CkksKeyHolder:
        return CkksKeyHolder(params)

    def new_encryptor(self, device_bundle: bytes, params: CkksParams) -> CkksQueryEncryptor:
        return CkksQueryEncryptor(device_bundle, params)

    def list_values(self, db: KnownHashDatabase) -> np.ndarray:
        f = db.features.get(self.hasher.name)
        if f is None:
            raise ConfigError(f"{self.name}: the known list holds no {self.hasher.name} features")
        if f.shape[1] != self._dim:
            raise ConfigError(f"{self.name}: {self.hasher.name} features have {f.shape[1]} values, expected {self._dim}")
        return _centred(f)

    def new_matcher(self, public_bundle: bytes, values: np.ndarray, params: CkksParams, rng) -> CkksMatcher:
        return CkksMatcher(public_bundle, values, params, rng)

    def query_value(self, image: Image.Image) -> np.ndarray:
        return _centred(self.hasher.features(image))

    def plaintext_verdict(self, db: KnownHashDatabase, image: Image.Image) -> bool:
        """The same rule in the clear: some list entry's cosine similarity exceeds the threshold."""
        return bool((self.list_values(db) @ self.query_value(image) > self.p["similarity"]).any())

    def decrypt(self, holder: CkksKeyHolder, result: bytes) -> tuple[bool, int]:
        v = holder.decrypt_values(result)
        pos = int(np.count_nonzero(v > 0))
        return pos > 0, pos
