"""A live source's changes, against the copy-two-dicts algorithm they replaced.

Until issue 19 every change copied both lookup dicts and applied the change
to the copies one key at a time. That algorithm is the model here, on plain
dicts; the authenticator (tables changed in one batch) must end in exactly
the same keys, ids, sourced set and availability after any sequence of
changes, whole sets, outages and changes by hand, with keys and names drawn
from small pools so that clashes are common.
"""

from __future__ import annotations

import hashlib
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from asgi_apikey import APIKey, APIKeyAuth, ConfigurationError
from asgi_apikey.keys import Accepted
from tests.test_sources import FakeLive, started

SECRETS = [f"sk-live-model-{n}-0123456789abcdef" for n in range(6)]
NAMES = ["a", "b", "c", "d"]
keys = st.builds(
    lambda secret, name: APIKey(secret, name=name),
    st.sampled_from(SECRETS),
    st.sampled_from(NAMES),
)


def digest_of(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


class Model:
    """The previous algorithm on dicts: by digest the key_id, by key_id the digest."""

    def __init__(self) -> None:
        self.by_digest: dict[bytes, str] = {}
        self.by_id: dict[str, bytes] = {}
        self.sourced: set[bytes] = set()
        self.unavailable = False

    @staticmethod
    def admitted(key: APIKey, by_digest: dict[bytes, str], by_id: dict[str, bytes]) -> bool:
        return key._digest not in by_digest and key.key_id not in by_id

    @classmethod
    def admit_all(
        cls,
        keys: list[APIKey],
        by_digest: dict[bytes, str],
        by_id: dict[str, bytes],
        sourced: set[bytes],
    ) -> None:
        """Add each of ``keys`` that clashes with nothing before it, as sourced."""
        for key in keys:
            if cls.admitted(key, by_digest, by_id):
                by_digest[key._digest] = key.key_id
                by_id[key.key_id] = key._digest
                sourced.add(key._digest)

    def change(self, added: list[APIKey], removed: list[bytes]) -> None:
        if self.unavailable:
            return
        by_digest, by_id, sourced = dict(self.by_digest), dict(self.by_id), set(self.sourced)
        for digest in [*removed, *(key._digest for key in added)]:
            if digest in sourced:
                sourced.discard(digest)
                gone = by_digest.pop(digest, None)
                if gone is not None:
                    del by_id[gone]
        self.admit_all(added, by_digest, by_id, sourced)
        self.by_digest, self.by_id, self.sourced = by_digest, by_id, sourced

    def kept(self) -> tuple[dict[bytes, str], dict[str, bytes]]:
        by_digest = {d: i for d, i in self.by_digest.items() if d not in self.sourced}
        return by_digest, {i: d for d, i in by_digest.items()}

    def replace(self, fresh: list[APIKey]) -> None:
        by_digest, by_id = self.kept()
        sourced: set[bytes] = set()
        self.admit_all(fresh, by_digest, by_id, sourced)
        self.by_digest, self.by_id, self.sourced = by_digest, by_id, sourced
        self.unavailable = False

    def go_unavailable(self) -> None:
        self.by_digest, self.by_id = self.kept()
        self.sourced = set()
        self.unavailable = True


class LiveMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.source = FakeLive()
        self.auth: APIKeyAuth = started(self.source)
        self.model = Model()

    @property
    def sink(self) -> Any:
        assert self.source.sink is not None
        return self.source.sink

    @rule(
        added=st.lists(keys, max_size=4, unique_by=lambda key: key._digest),
        removed=st.lists(st.sampled_from(SECRETS), max_size=3),
    )
    def change(self, added: list[APIKey], removed: list[str]) -> None:
        self.sink.change(added, ["sha256:" + digest_of(s).hex() for s in removed])
        self.model.change(added, [digest_of(s) for s in removed])

    @rule(fresh=st.lists(keys, max_size=5, unique_by=lambda key: key._digest))
    def replace(self, fresh: list[APIKey]) -> None:
        self.sink.replace(fresh)
        self.model.replace(fresh)

    @rule()
    def outage(self) -> None:
        self.sink.unavailable("The API key store is unavailable; try again later")
        self.model.go_unavailable()

    @rule(key=keys)
    def add_by_hand(self, key: APIKey) -> None:
        model = self.model
        clash = key._digest in model.by_digest or key.key_id in model.by_id
        try:
            self.auth.add_key(key)
        except ConfigurationError:
            assert clash
            return
        assert not clash
        model.by_digest[key._digest] = key.key_id
        model.by_id[key.key_id] = key._digest

    @rule(name=st.sampled_from(NAMES))
    def remove_by_hand(self, name: str) -> None:
        model = self.model
        removed = self.auth.remove_key(name)
        assert removed == (name in model.by_id)
        if removed:
            digest = model.by_id.pop(name)
            del model.by_digest[digest]
            model.sourced.discard(digest)

    @invariant()
    def same_keys_as_the_model(self) -> None:
        snapshot = self.auth.snapshot
        assert {d: e.key.key_id for d, e in snapshot.by_digest.iter_items()} == (
            self.model.by_digest
        )
        assert dict(snapshot.by_id.iter_items()) == self.model.by_id
        assert set(self.auth._ring.sourced) == self.model.sourced
        assert (snapshot.unavailable is not None) == self.model.unavailable
        for secret in SECRETS:
            digest = digest_of(secret)
            expected = self.model.by_digest.get(digest)
            entry = snapshot.resolve(secret.encode())
            if expected is None:
                assert entry is None
            else:
                assert isinstance(entry, Accepted)
                assert entry.context.key_id == expected


LiveMachine.TestCase.settings = settings(max_examples=120, stateful_step_count=25, deadline=None)
test_changes_match_the_copying_algorithm = LiveMachine.TestCase
