"""Run the order service: ``python -m examples.flask_orders`` (or ``make flask-example``).

Creates the tables (the app's and statekit's) and the demo orders when the database
has none, then serves the app with Flask's development server. The database is a
SQLite file in ``instance/`` unless ``FLASK_SQLALCHEMY_DATABASE_URI`` names another,
e.g. ``postgresql+psycopg://postgres@127.0.0.1:5432/orders``.
"""

from __future__ import annotations

import argparse
import logging

from examples.flask_orders.app import create_app
from examples.flask_orders.models import db
from examples.flask_orders.seed import seed_demo


def main(argv: list[str] | None = None) -> None:
    """Create the tables and demo data, then serve."""
    parser = argparse.ArgumentParser(prog="python -m examples.flask_orders")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument(
        "--reset", action="store_true", help="drop every table first and start from the demo"
    )
    parser.add_argument("--no-serve", action="store_true", help="set up the database and exit")
    args = parser.parse_args(argv)
    app = create_app()
    with app.app_context():
        if args.reset:
            db.drop_all()
        db.create_all()
        # The demo's stuck orders come from a simulated payment outage: keep the
        # sweeper's warnings about those refunds out of the start-up output.
        quiet = logging.getLogger("statekit")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            added = seed_demo()
        finally:
            quiet.setLevel(level)
        where = db.engine.url.render_as_string(hide_password=True)
        db.session.remove()
        db.engine.dispose()  # the set-up's connections; serving opens its own
    print(f"database: {where} ({added} demo orders added)")
    if not args.no_serve:
        print(f"open http://{args.host}:{args.port}/ (needs attention: /attention)")
        app.run(host=args.host, port=args.port)


if __name__ == "__main__":
    main()
