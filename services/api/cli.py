"""``rebalancer``: the command line for the API.

User commands talk to the API over HTTP (``REBALANCER_API_URL``, ``REBALANCER_TOKEN`` or
``--api-url``/``--token``); admin commands talk to the database (``DATABASE_URL``)::

    rebalancer admin create-user alice@example.com [--admin]
    rebalancer admin create-token alice@example.com
    rebalancer portfolios list | show ID | create --name N --weights BTC=60,ETH=40 [...] | update ID [...] | delete ID
    rebalancer trigger ID [--dry-run]          rebalancer preview ID
    rebalancer history [--portfolio ID] [--limit 10] [--success] [--from ISO] [--to ISO]
    rebalancer trades [--portfolio ID]         rebalancer trades export --csv FILE
    rebalancer stats [--portfolio ID]
    rebalancer connections list | add --exchange ID [--api-key K --secret S | --paper-account A] | delete ID
    rebalancer connections set-key ID [--api-key K]    rebalancer connections unresolved ID
    rebalancer connections abandon-orders ID CLIENT_ORDER_ID...
    rebalancer scheduler status | start | stop
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from services.api.cli_format import key_values, parse_weights, table

PORTFOLIO_COLUMNS = [
    ("id", "ID"), ("name", "NAME"), ("targetWeights", "TARGETS"), ("rebalanceEnabled", "ENABLED"),
    ("rebalanceInterval", "INTERVAL"), ("rebalanceThreshold", "THRESHOLD"), ("nextRebalanceAt", "NEXT"),
]
RUN_COLUMNS = [
    ("executedAt", "EXECUTED"), ("status", "STATUS"), ("triggeredBy", "TRIGGER"), ("dryRun", "DRY"),
    ("portfolioValue", "VALUE"), ("ordersExecuted", "ORDERS"), ("totalValueTraded", "TRADED"), ("fees", "FEES"),
    ("id", "RUN"),
]
TRADE_COLUMNS = [
    ("executedAt", "DATE"), ("asset", "ASSET"), ("side", "SIDE"), ("quantity", "QUANTITY"), ("price", "PRICE"),
    ("value", "VALUE"), ("fee", "FEE"), ("exchangeId", "EXCHANGE"),
]
ORDER_COLUMNS = [
    ("createdAt", "DATE"), ("symbol", "SYMBOL"), ("side", "SIDE"), ("amount", "AMOUNT"), ("status", "STATUS"),
    ("filled", "FILLED"), ("fee", "FEE"), ("problem", "ERROR"), ("runId", "RUN"),
]
UNRESOLVED_COLUMNS = [
    ("clientOrderId", "CLIENT ORDER ID"), ("runId", "RUN"), ("runStatus", "RUN STATUS"), ("side", "SIDE"),
    ("symbol", "SYMBOL"), ("state", "STATE"),
]
CONNECTION_COLUMNS = [
    ("id", "ID"), ("exchangeId", "EXCHANGE"), ("label", "LABEL"), ("apiKeyHint", "KEY"),
    ("paperAccount", "PAPER ACCOUNT"), ("sandbox", "SANDBOX"), ("sharesAccount", "SHARES ACCOUNT"),
]


class CliError(Exception):
    pass


# ---------------------------------------------------------------- HTTP
class Client:
    def __init__(self, url: str, token: str) -> None:
        if not token:
            raise CliError("set REBALANCER_TOKEN (or --token) to an API token")
        self._http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def call(self, method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = self._http.request(method, path, json=body, params=clean)
        except httpx.HTTPError as exc:
            raise CliError(f"cannot reach the API at {self._http.base_url}: {exc}") from None
        if response.status_code >= 400:
            raise CliError(_error_text(response))
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.text


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:200]}"
    if response.status_code == 422 and isinstance(body.get("detail"), list):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in d['loc'] if p != 'body')}: {d['msg']}" for d in body["detail"]
        )
        return f"invalid input: {problems}"
    return f"HTTP {response.status_code}: {body.get('error') or body}"


# ---------------------------------------------------------------- commands
def _portfolio_body(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if args.name is not None:
        body["name"] = args.name
    if args.weights is not None:
        body["targetWeights"] = parse_weights(args.weights)
    for attr, field in (("interval", "rebalanceInterval"), ("threshold", "rebalanceThreshold"),
                        ("connection", "connectionId"), ("quote", "quoteCurrency"),
                        ("max_orders", "maxOrdersPerRebalance"), ("threshold_kind", "thresholdKind")):
        value = getattr(args, attr)
        if value is not None:
            body[field] = value
    if args.enabled is not None:
        body["rebalanceEnabled"] = args.enabled
    if args.dry_run is not None:
        body["dryRun"] = args.dry_run
    return body


def run_portfolios(client: Client, args: argparse.Namespace) -> str:
    if args.action == "list":
        return table(client.call("GET", "/api/portfolios/manage")["portfolios"], PORTFOLIO_COLUMNS)
    if args.action == "show":
        return key_values(client.call("GET", f"/api/v1/portfolios/{args.id}"))
    if args.action == "create":
        if args.name is None or args.weights is None:
            raise CliError("create needs --name and --weights")
        created = client.call("POST", "/api/portfolios/manage", body=_portfolio_body(args))["portfolio"]
        return f"created portfolio {created['id']}\n" + key_values(created)
    if args.action == "update":
        updated = client.call("PUT", "/api/portfolios/manage", body={"id": args.id, **_portfolio_body(args)})
        return f"updated portfolio {args.id}\n" + key_values(updated["portfolio"])
    client.call("DELETE", "/api/portfolios/manage", params={"id": args.id})
    return f"deleted portfolio {args.id}"


def _filters(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "portfolioId": getattr(args, "portfolio", None),
        "limit": getattr(args, "limit", None),
        "from": getattr(args, "date_from", None),
        "to": getattr(args, "date_to", None),
        "success": "true" if getattr(args, "success", False) else None,
        "status": getattr(args, "status", None),
        "runId": getattr(args, "run", None),
    }


def _orders_table(orders: list[dict[str, Any]]) -> str:
    """Orders with a failed or rejected one's error as ``code: message``."""
    rows = [{**o, "problem": f"{o['error']['code']}: {o['error']['message']}" if o.get("error") else None}
            for o in orders]
    return table(rows, ORDER_COLUMNS)


def run_command(args: argparse.Namespace) -> str:
    if args.group == "admin":
        return asyncio.run(run_admin(args))
    client = Client(args.api_url, args.token)
    if args.group == "portfolios":
        return run_portfolios(client, args)
    if args.group == "trigger":
        body = {"portfolioId": args.id, **({"dryRun": True} if args.dry_run else {})}
        accepted = client.call("POST", "/api/scheduler/trigger", body=body)
        return f"run requested for {args.id} (message {accepted['messageId']})"
    if args.group == "preview":
        plan = client.call("POST", f"/api/v1/portfolios/{args.id}/preview")
        lines = [f"decision: {plan['decision']} ({plan['reason']})",
                 f"value: {plan['portfolioValue']} {plan['quoteCurrency']}, fees ~{plan['estimatedFees']}"]
        lines.append(table(plan["orders"], [("side", "SIDE"), ("symbol", "SYMBOL"), ("amount", "AMOUNT"),
                                            ("value", "VALUE"), ("fee", "FEE")]))
        return "\n".join(lines)
    if args.group == "history":
        page = client.call("GET", "/api/v1/history", params=_filters(args))
        return table(page["runs"], RUN_COLUMNS) + f"\n{len(page['runs'])} of {page['total']} run(s)"
    if args.group == "orders":
        page = client.call("GET", "/api/v1/orders", params=_filters(args))
        return _orders_table(page["orders"]) + f"\n{len(page['orders'])} of {page['total']} order(s)"
    if args.group == "trades":
        if args.action == "export":
            if not args.csv:
                raise CliError("trades export needs --csv FILE")
            params = {"portfolioId": args.portfolio}
            text = client.call("GET", "/api/v1/trades/export", params=params)
            Path(args.csv).write_text(text)
            return f"wrote {max(text.count(chr(10)) - 1, 0)} trade(s) to {args.csv}"
        page = client.call("GET", "/api/v1/trades", params=_filters(args))
        return table(page["trades"], TRADE_COLUMNS) + f"\n{len(page['trades'])} of {page['total']} trade(s)"
    if args.group == "stats":
        stats = client.call("GET", "/api/v1/stats", params={"portfolioId": args.portfolio})
        stats.pop("success", None)
        return key_values(stats)
    if args.group == "connections":
        if args.action == "list":
            return table(client.call("GET", "/api/v1/connections")["connections"], CONNECTION_COLUMNS)
        if args.action == "delete":
            client.call("DELETE", f"/api/v1/connections/{args.id}")
            return f"deleted connection {args.id}"
        if args.action == "set-key":
            changed = client.call("PUT", f"/api/v1/connections/{args.id}/credentials", body=_keys(args))["connection"]
            return f"connection {args.id} now uses key {changed['apiKeyHint']}"
        if args.action == "unresolved":
            found = client.call("GET", f"/api/v1/connections/{args.id}/unresolved-orders")["orders"]
            return table(found, UNRESOLVED_COLUMNS) + f"\n{len(found)} order(s) of unknown outcome"
        if args.action == "abandon-orders":
            body = {"clientOrderIds": args.client_order_ids}
            sent = client.call("POST", f"/api/v1/connections/{args.id}/abandon-orders", body=body)["orders"]
            return (f"giving up {len(sent)} order(s): each is looked up once more; the history shows what was"
                    " found, and the rest as abandoned")
        return _add_connection(client, args)
    if args.group == "scheduler":
        if args.action == "status":
            body = client.call("GET", "/api/scheduler")
            status = body["status"]
            head = (f"running: {'yes' if status['isRunning'] else 'no'}  check: {status['config']['checkInterval']}"
                    f"  dry-run mode: {'yes' if status['config']['dryRunMode'] else 'no'}"
                    f"  active runs: {status['activeTasks']}")
            return head + "\n" + table(body["schedule"], [("id", "ID"), ("name", "NAME"),
                                                          ("rebalanceInterval", "INTERVAL"),
                                                          ("lastRebalancedAt", "LAST"), ("nextRebalanceAt", "NEXT")])
        sent = client.call("POST", "/api/scheduler", body={"action": args.action})
        return f"scheduler {args.action} requested (message {sent['messageId']})"
    raise CliError(f"unknown command {args.group}")


def _keys(args: argparse.Namespace) -> dict[str, str]:
    """Prompted for rather than taken on the command line (they would land in shell history)."""
    keys = {
        "apiKey": args.api_key or os.environ.get("REBALANCER_API_KEY") or getpass.getpass("API key: "),
        "secret": os.environ.get("REBALANCER_API_SECRET") or getpass.getpass("API secret: "),
    }
    if args.passphrase:
        keys["passphrase"] = os.environ.get("REBALANCER_API_PASSPHRASE") or getpass.getpass("Passphrase: ")
    return keys


def _add_connection(client: Client, args: argparse.Namespace) -> str:
    body: dict[str, Any] = {"exchangeId": args.exchange, "label": args.label or ""}
    if args.exchange == "paper":
        body["paperAccount"] = args.paper_account
    else:
        # Prompt rather than take secrets on the command line (they would land in shell history).
        body |= _keys(args)
        if args.api_url_exchange:
            body["apiUrl"] = args.api_url_exchange
        body["sandbox"] = args.sandbox
    created = client.call("POST", "/api/v1/connections", body=body)["connection"]
    return f"added connection {created['id']}\n" + key_values(created)


async def run_admin(args: argparse.Namespace) -> str:
    import asyncpg

    from services.api.accounts import ADMIN_SCOPE, USER_SCOPE, create_token, ensure_user, find_user

    dsn = args.database_url or os.environ.get("DATABASE_URL", "")
    if not dsn:
        raise CliError("set DATABASE_URL (or --database-url) for admin commands")
    conn = await asyncpg.connect(dsn)
    try:
        if args.action == "create-user":
            user_id = await ensure_user(conn, args.email, args.name or "", args.admin)
            return f"user {args.email}: {user_id}{' (admin)' if args.admin else ''}"
        found = await find_user(conn, args.email)
        if found is None:
            raise CliError(f"no user {args.email}; create it with `rebalancer admin create-user`")
        is_admin = bool(await conn.fetchval("SELECT is_admin FROM users WHERE id = $1", found))
        scopes = [USER_SCOPE, ADMIN_SCOPE] if is_admin else [USER_SCOPE]
        return await create_token(conn, found, args.label or "cli", scopes)
    finally:
        await conn.close()


# ---------------------------------------------------------------- parser
def _bool_flag(parser: argparse.ArgumentParser, name: str, dest: str, help_text: str) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(f"--{name}", dest=dest, action="store_true", default=None, help=help_text)
    group.add_argument(f"--no-{name}", dest=dest, action="store_false")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rebalancer", description="Crypto portfolio rebalancer")
    parser.add_argument("--api-url", default=os.environ.get("REBALANCER_API_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--token", default=os.environ.get("REBALANCER_TOKEN", ""))
    groups = parser.add_subparsers(dest="group", required=True)

    admin = groups.add_parser("admin", help="users and tokens (direct database access)")
    admin.add_argument("--database-url", default=None)
    admin_actions = admin.add_subparsers(dest="action", required=True)
    create_user = admin_actions.add_parser("create-user")
    create_user.add_argument("email")
    create_user.add_argument("--name", default="")
    create_user.add_argument("--admin", action="store_true")
    create_token = admin_actions.add_parser("create-token")
    create_token.add_argument("email")
    create_token.add_argument("--label", default="cli")

    portfolios = groups.add_parser("portfolios", help="list, show, create, update, delete")
    actions = portfolios.add_subparsers(dest="action", required=True)
    actions.add_parser("list")
    for name in ("show", "delete"):
        actions.add_parser(name).add_argument("id")
    for name in ("create", "update"):
        p = actions.add_parser(name)
        if name == "update":
            p.add_argument("id")
        p.add_argument("--name")
        p.add_argument("--weights", help="BTC=40,ETH=30,SOL=20,ADA=10")
        p.add_argument("--interval", help="hourly, daily, weekly, monthly, threshold, or a cron expression")
        p.add_argument("--threshold")
        p.add_argument("--threshold-kind", choices=["absolute", "relative", "value"])
        p.add_argument("--connection")
        p.add_argument("--quote")
        p.add_argument("--max-orders", type=int)
        _bool_flag(p, "enabled", "enabled", "rebalance on schedule")
        _bool_flag(p, "dry-run", "dry_run", "simulate fills")

    trigger = groups.add_parser("trigger", help="rebalance a portfolio now")
    trigger.add_argument("id")
    trigger.add_argument("--dry-run", action="store_true")
    groups.add_parser("preview", help="the plan a portfolio would execute now").add_argument("id")

    history = groups.add_parser("history", help="rebalance runs, newest first")
    orders = groups.add_parser("orders", help="orders whatever became of them, with errors, newest first")
    orders.add_argument("--status", help="submitted, filled, partially_filled, rejected, failed, canceled or abandoned")
    orders.add_argument("--run", help="one run's orders")
    trades = groups.add_parser("trades", help="trades; `trades export --csv FILE` for tax")
    trades.add_argument("action", nargs="?", choices=["list", "export"], default="list")
    trades.add_argument("--csv")
    for p in (history, orders, trades):
        p.add_argument("--portfolio")
        p.add_argument("--limit", type=int, default=20)
        p.add_argument("--from", dest="date_from")
        p.add_argument("--to", dest="date_to")
    history.add_argument("--success", action="store_true", help="successful runs only")
    groups.add_parser("stats", help="value traded, average value, runs, success rate, fees").add_argument(
        "--portfolio"
    )

    connections = groups.add_parser("connections", help="exchange connections")
    connection_actions = connections.add_subparsers(dest="action", required=True)
    connection_actions.add_parser("list")
    add = connection_actions.add_parser("add", help="keys are prompted for (or REBALANCER_API_KEY/_SECRET)")
    add.add_argument("--exchange", required=True, help="a ccxt exchange id, or paper")
    add.add_argument("--label")
    add.add_argument("--api-key")
    add.add_argument("--passphrase", action="store_true", help="prompt for a passphrase too")
    add.add_argument("--exchange-api-url", dest="api_url_exchange")
    add.add_argument("--sandbox", action="store_true")
    add.add_argument("--paper-account")
    connection_actions.add_parser(
        "delete", help="once no portfolio uses it and no order of unknown outcome on it is being looked up"
    ).add_argument("id")
    set_key = connection_actions.add_parser(
        "set-key", help="a new API key of the same account (prompted for, or REBALANCER_API_KEY/_SECRET)"
    )
    set_key.add_argument("id")
    set_key.add_argument("--api-key")
    set_key.add_argument("--passphrase", action="store_true", help="prompt for a passphrase too")
    connection_actions.add_parser("unresolved", help="orders of unknown outcome on it").add_argument("id")
    abandon = connection_actions.add_parser(
        "abandon-orders",
        help="give up orders of unknown outcome the exchange can never answer for (key revoked, account closed)",
    )
    abandon.add_argument("id")
    abandon.add_argument("client_order_ids", nargs="+", metavar="CLIENT_ORDER_ID")

    scheduler = groups.add_parser("scheduler", help="status, start, stop (start/stop need an admin token)")
    scheduler.add_argument("action", choices=["status", "start", "stop", "restart"])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    try:
        output = run_command(args)
    except (CliError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
