"""The extension's set-up: init_app once per app, app factories, several apps in one
process, settings from STATEKIT_* keys, the actor, and a person's levers."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from flask import Flask, Request
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from models.order import OrderWorkflow
from models.orm import Base, OrderRow
from statekit import ManualClock, Runner
from statekit.contrib.flask import (
    AlreadyInitializedError,
    ConfigError,
    DetachedEntityError,
    NotInitializedError,
    Settings,
    StateKit,
    state_of,
)
from statekit.errors import StatekitError
from statekit.store.sqlalchemy import SQLAlchemyStore
from tests.contrib.flask.conftest import AppFactory
from tests.contrib.flask.shop import Order, db, statekit, sweep_until_dead_lettered
from tests.contrib.flask.test_requests import place, stored
from tests.sql_support import engine_for, fresh_database


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'shop.db'}"


def test_init_app_twice_on_one_app_fails(make_app: AppFactory, sqlite_url: str) -> None:
    app = make_app(sqlite_url)
    state = app.extensions["statekit"]
    with pytest.raises(AlreadyInitializedError, match="already initialised on app"):
        statekit.init_app(app, db=db)
    with pytest.raises(AlreadyInitializedError):
        StateKit(app, db=db)  # another StateKit object: still one statekit per app
    assert app.extensions["statekit"] is state


def test_the_state_lives_in_app_extensions_not_on_the_extension(
    make_app: AppFactory, sqlite_url: str
) -> None:
    app = make_app(sqlite_url, STATEKIT_SWEEP_BATCH_SIZE=7)
    assert state_of(app).settings.sweep_batch_size == 7
    assert not any(isinstance(v, Flask) for v in vars(statekit).values())
    with app.app_context():
        assert statekit.machines == {"order": OrderWorkflow.machine}
        assert statekit.state.classes == {"order": Order}
        assert statekit.sweeper().batch_size == 7
    with pytest.raises(NotInitializedError, match="call StateKit"):
        state_of(Flask("bare"))


def test_two_apps_in_one_process_keep_separate_settings_and_databases(
    make_app: AppFactory, tmp_path: Path
) -> None:
    with fresh_database("postgresql", tmp_path) as pg_url:
        one = make_app(f"sqlite:///{tmp_path / 'one.db'}", STATEKIT_TABLE_PREFIX="one_")
        two = make_app(pg_url, STATEKIT_TABLE_PREFIX="two_", STATEKIT_ACTOR=lambda r: "bot")
        place(one.test_client())
        place(two.test_client())
        one.test_client().post("/orders/1/events/reserve", environ_base={"REMOTE_USER": "ann"})
        assert stored(one)["events"] == ["reserve"]
        assert stored(two)["events"] == []
        two.test_client().post("/orders/1/events/cancel")
        with one.app_context():
            assert statekit.store.tables.transitions.name == "one_transitions"
            assert statekit.store.engine.dialect.name == "sqlite"
            assert [r.actor for r in statekit.store.history("order", "1")] == ["ann"]
        with two.app_context():
            assert statekit.store.tables.transitions.name == "two_transitions"
            assert statekit.store.engine.dialect.name == "postgresql"
            assert [r.actor for r in statekit.store.history("order", "1")] == ["bot"]
            for engine in db.engines.values():
                engine.dispose()


def test_an_app_factory_can_take_db_and_entities_at_init_app(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'plain.db'}"
    engine = engine_for(url)
    Base.metadata.create_all(engine)
    extension = StateKit(entities={OrderRow.__statekit_machine__: OrderRow})
    app = Flask("plain")
    app.config["STATEKIT_DATABASE_URL"] = url  # no Flask-SQLAlchemy: plain SQLAlchemy
    extension.init_app(app)
    try:
        with app.app_context():
            extension.store.create_tables()
            with Session(extension.store.engine) as session:
                order = OrderRow(id=1, total=Decimal(5))
                session.add(order)
                extension.start(order)
                extension.fire(order, "reserve", actor="ann")
                session.commit()
            assert [r.event for r in extension.store.history("order", "1")] == ["reserve"]
    finally:
        state_of(app).dispose()
        engine.dispose()


def test_settings_are_checked_at_init_app(sqlite_url: str) -> None:
    def build(**config: object) -> None:
        app = Flask("bad")
        app.config["SQLALCHEMY_DATABASE_URI"] = sqlite_url
        app.config.update(config)
        StateKit(app, db=db)

    with pytest.raises(ConfigError, match="STATEKIT_SWEEP_BATCH_SIZE must be a whole number"):
        build(STATEKIT_SWEEP_BATCH_SIZE=0.5)
    with pytest.raises(ConfigError, match="STATEKIT_SWEEP_INTERVAL must be a number"):
        build(STATEKIT_SWEEP_INTERVAL="often")
    with pytest.raises(ConfigError, match="STATEKIT_PROBLEM_DETAILS must be True or False"):
        build(STATEKIT_PROBLEM_DETAILS="yes")
    with pytest.raises(ConfigError, match="STATEKIT_ACTOR 'nowhere:who' cannot be imported"):
        build(STATEKIT_ACTOR="nowhere:who")
    with pytest.raises(ConfigError, match="STATEKIT_ACTOR 'os' is not a callable"):
        build(STATEKIT_ACTOR="os")
    with pytest.raises(ConfigError, match="table prefix"):
        build(STATEKIT_TABLE_PREFIX="1-bad")
    with pytest.raises(ConfigError, match="needs a database: pass db="):
        StateKit(Flask("nodb"))


def test_every_default_is_documented_and_read() -> None:
    settings = Settings.from_config({})
    assert settings.database_url is None
    assert settings.sweep_interval == 30.0
    assert settings.problem_details is False
    assert settings.handler_timeout is None
    docs = (Path(__file__).parents[3] / "docs" / "flask.md").read_text()
    from statekit.contrib.flask import DEFAULTS

    for key in DEFAULTS:
        assert f"`{key}`" in docs, key


def actor_from_header(request: Request) -> str | None:
    """An actor resolver named by import path in a test."""
    return request.headers.get("X-User")


@pytest.mark.parametrize(
    ("config", "environ", "headers", "actor"),
    [
        ({}, {"REMOTE_USER": "ann"}, {}, "ann"),
        ({}, {}, {}, None),
        (
            {"STATEKIT_ACTOR": "tests.contrib.flask.test_extension:actor_from_header"},
            {},
            {"X-User": "bob"},
            "bob",
        ),
        ({"STATEKIT_ACTOR": lambda request: "service"}, {}, {}, "service"),
    ],
    ids=["remote-user", "anonymous", "import-path", "callable"],
)
def test_the_actor_comes_from_the_request(
    make_app: AppFactory,
    sqlite_url: str,
    config: dict[str, object],
    environ: dict[str, str],
    headers: dict[str, str],
    actor: str | None,
) -> None:
    app = make_app(sqlite_url, **config)
    client = app.test_client()
    place(client)
    client.post("/orders/1/events/reserve", environ_base=environ, headers=headers)
    with app.app_context():
        assert [r.actor for r in statekit.store.history("order", "1")] == [actor]


def test_firing_on_an_entity_in_no_session_is_refused(
    make_app: AppFactory, sqlite_url: str
) -> None:
    app = make_app(sqlite_url)
    place(app.test_client())
    with app.test_request_context():
        order = db.session.get(Order, 1)
        assert order is not None
        db.session.expunge(order)
        with pytest.raises(DetachedEntityError, match=r"load it through db\.session"):
            statekit.fire(order, "reserve")
        with pytest.raises(StatekitError, match="stores no machine of this app"):
            statekit.fire(object(), "reserve")
    assert stored(app)["events"] == []


def test_an_app_without_machines_says_how_to_declare_one(tmp_path: Path) -> None:
    from flask_sqlalchemy import SQLAlchemy

    bare = SQLAlchemy()
    app = Flask("bare")
    app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{tmp_path / 'bare.db'}"
    bare.init_app(app)
    StateKit(app, db=bare)
    with app.app_context(), pytest.raises(StatekitError, match="__statekit_machine__"):
        _ = StateKit().store


def dead_lettered(engine: Engine) -> None:
    """Order 1 paid, then stuck past its deadline with its refund dead-lettered."""
    store = SQLAlchemyStore(engine, {OrderWorkflow.machine: Order})
    clock = ManualClock()
    runner = Runner(OrderWorkflow.machine, store, clock=clock)
    with Session(engine, expire_on_commit=False) as session, session.begin():
        order = Order(id=1, total=Decimal(10))
        session.add(order)
        runner.start(order)
    runner.fire_by_key(1, "reserve")
    runner.fire_by_key(1, "pay", amount=Decimal(10), reference="P-1")
    sweep_until_dead_lettered(runner, clock)


def test_a_person_retries_and_resolves_through_the_app(
    make_app: AppFactory, sqlite_url: str
) -> None:
    app = make_app(sqlite_url)
    with app.app_context():
        dead_lettered(db.engine)
    with app.test_request_context(environ_base={"REMOTE_USER": "ops-ann"}):
        [(snapshot, tasks)] = statekit.stuck()
        assert (snapshot.key, snapshot.state) == ("1", "paid")
        assert [(t.action, t.status) for t in tasks] == [
            ("refund_payment", "dead"),
            ("release_stock", "pending"),
        ]
        record = statekit.retry("order", 1)
        assert (record.event, record.actor) == ("@retry", "ops-ann")
        result = statekit.sweep()
        assert result.compensated == 1
        assert statekit.stuck() == []
        with pytest.raises(StatekitError, match="no dead-lettered compensations"):
            statekit.retry("order", 1)
    with app.test_request_context():
        record = statekit.resolve("order", 1, "refunded", note="refunded by phone")
        assert (record.target, record.actor) == ("refunded", "anonymous")
    assert stored(app)["state"] == "refunded"
    with app.app_context():
        assert db.session.scalar(select(Order.paid_amount)) == Decimal(0)


def test_from_header_outside_a_request_is_a_statekit_error(
    make_app: AppFactory, sqlite_url: str
) -> None:
    from statekit.contrib.flask import FROM_HEADER

    app = make_app(sqlite_url)
    place(app.test_client())
    with app.app_context():
        order = db.session.get(Order, 1)
        with pytest.raises(StatekitError, match="reads the request's Idempotency-Key header"):
            statekit.fire(order, "reserve", idempotency_key=FROM_HEADER)
