"""Both backends implement the whole Store contract (gq/store/api.py), with the
contract's parameters: a method added to the Protocol and forgotten by a backend,
or a keyword spelled differently, fails here before any behaviour test runs."""

from __future__ import annotations

import inspect

import pytest

from gq.store.api import Store
from gq.store.lmdb.store import LMDBStore
from gq.store.postgres.store import PostgresStore

# Writes a worker calls from its event loop: each has an `a`-prefixed twin.
TWINS = ("claim", "finish", "extend", "hand_back", "promote_due", "expire_lifetimes",
         "reclaim_owner", "purge")
MEMBERS = ("capabilities", "liveness", "doorbell", "ended_bell", "path", "tag")


def contract_methods():
    return sorted(name for name, value in vars(Store).items()
                  if callable(value) and not name.startswith("_"))


def parameters(fn) -> list[tuple[str, object]]:
    return [(p.name, p.kind) for p in inspect.signature(fn).parameters.values()]


@pytest.mark.parametrize("backend_class", [LMDBStore, PostgresStore])
@pytest.mark.parametrize("name", contract_methods())
def test_every_contract_method_is_implemented_with_its_parameters(backend_class, name):
    method = getattr(backend_class, name, None)
    assert method is not None, f"{backend_class.__name__} lacks {name}"
    assert parameters(method) == parameters(getattr(Store, name)), \
        f"{backend_class.__name__}.{name} takes other parameters than the contract"


@pytest.mark.parametrize("backend_class", [LMDBStore, PostgresStore])
@pytest.mark.parametrize("name", TWINS)
def test_writes_called_from_an_event_loop_have_a_coroutine_twin(backend_class, name):
    twin = getattr(backend_class, "a" + name)
    assert inspect.iscoroutinefunction(twin)
    assert parameters(twin) == parameters(getattr(backend_class, name))


def test_the_contract_names_its_members():
    annotated = Store.__annotations__
    for member in MEMBERS:
        assert member in annotated


def test_capabilities_are_declared_not_probed():
    assert LMDBStore.capabilities.ready_feed and LMDBStore.capabilities.boot_scoped
    assert not LMDBStore.capabilities.claims_by_quota
    assert PostgresStore.capabilities.claims_by_quota
    assert not PostgresStore.capabilities.ready_feed
    assert not PostgresStore.capabilities.boot_scoped
    assert LMDBStore.capabilities.local_reads and not PostgresStore.capabilities.local_reads
