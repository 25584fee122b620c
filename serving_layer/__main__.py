"""python -m serving_layer serve|keys: the web server; service keys (create, list, revoke).

`serve` runs the serving layer under granian (a web server in Rust, the app through WSGI) with
`[serving] workers` processes of `threads` threads each; the workers share their Prometheus
metrics through one folder (`PROMETHEUS_MULTIPROC_DIR`, emptied at start; by default
<state_dir>/run/metrics-web-<port>). `serve --dev` runs Flask's development server instead, for
trying things out. Service keys are for programs, not people: `keys create importer --scope
ratings:write` prints the key once (only its hash is stored); `keys revoke importer` ends it at once.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from readnext.accounts import SCOPES, AccountError, Tokens
from readnext.clients import hbase_connection
from readnext.config import load_config


def _serve(args: argparse.Namespace) -> int:
    if args.dev:
        from serving_layer.app import create_app

        create_app().run(host=args.host, port=args.port, debug=False)
        return 0
    from granian import Granian
    from granian.constants import Interfaces

    config = load_config()
    metrics = Path(
        os.environ.setdefault(
            "PROMETHEUS_MULTIPROC_DIR", str(config.stack.state_dir / "run" / f"metrics-web-{args.port}")
        )
    )
    shutil.rmtree(metrics, ignore_errors=True)  # counters of an earlier run would be added to this one's
    metrics.mkdir(parents=True)
    Granian(
        "serving_layer.app:create_worker_app",
        factory=True,
        interface=Interfaces.WSGI,
        address=args.host,
        port=args.port,
        workers=args.workers or config.serving.workers,
        blocking_threads=args.threads or config.serving.threads,
        respawn_failed_workers=True,
    ).serve()
    return 0


def _keys(args: argparse.Namespace) -> int:
    config = load_config()
    conn = hbase_connection(config)
    try:
        tokens = Tokens(conn, config)
        tokens.ensure()
        if args.action == "create":
            try:
                key = tokens.issue_key(args.name, set(args.scope))
            except AccountError as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
            print(f"service key {args.name} ({', '.join(sorted(args.scope))}); shown once, keep it secret:")
            print(key)
        elif args.action == "list":
            for key in sorted(tokens.keys(), key=lambda k: k["created_ms"]):
                created = time.strftime("%Y-%m-%d %H:%M", time.gmtime(key["created_ms"] / 1000))
                print(f"{key['name']:32s} {' '.join(key['scopes']):28s} created {created} UTC  id {key['id']}")
        else:
            gone = tokens.revoke_key(args.name)
            print(f"revoked {gone} key(s) named {args.name}")
            return 0 if gone else 1
    finally:
        conn.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving_layer", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="the web server (granian), or Flask's development server")
    keys = commands.add_parser("keys", help="service keys: create, list, revoke")
    actions = keys.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a key and print it once")
    create.add_argument("name", help="what the key is for, e.g. importer")
    create.add_argument(
        "--scope",
        action="append",
        required=True,
        choices=sorted(SCOPES),
        help="; ".join(f"{k}: {v}" for k, v in SCOPES.items()),
    )
    actions.add_parser("list", help="the keys' names, scopes and creation times (never the keys)")
    revoke = actions.add_parser("revoke", help="revoke every key of that name")
    revoke.add_argument("name")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, help="worker processes (default: [serving] workers)")
    serve.add_argument("--threads", type=int, help="threads per worker (default: [serving] threads)")
    serve.add_argument("--dev", action="store_true", help="Flask's development server: one process, for trying out")
    args = parser.parse_args(argv or sys.argv[1:] or ["serve"])
    return _keys(args) if args.command == "keys" else _serve(args)


if __name__ == "__main__":
    sys.exit(main())
