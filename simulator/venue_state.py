"""A venue process's durable state for `xmc venue --state-dir`: every engine order's latest state and
every fill, appended (one JSON line each) before the report that tells the engine leaves the venue.

A venue killed and restarted with the same directory keeps its quickfix FileStore (sequence numbers
and sent messages, so the engine's ResendRequest is answered) and, from this file, the engine's
orders and fills: positions survive, ExecIDs are never reused, and orders that were resting when it
died are cancelled at restart (their cancels wait for the engine's logon), as an exchange does when
its matching engine restarts without its book.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TextIO


class VenueState:
    def __init__(self, path: Path):
        self.path = path
        self.records = self._read(path) if path.exists() else []
        self._fh: TextIO = open(path, "a", encoding="utf-8")  # noqa: SIM115 - held for the process's life

    @staticmethod
    def _read(path: Path) -> list[dict]:
        out = []
        lines = path.read_text(encoding="utf-8").splitlines()
        for n, line in enumerate(lines, 1):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                if n == len(lines):
                    break  # a torn last line: the process died while writing it; nothing was sent after it
                raise ValueError(
                    f"{path}: line {n} is not valid JSON; the venue state is corrupt "
                    f"(remove the directory to start the venues afresh)"
                ) from None
        return out

    def _write(self, record: dict) -> None:
        self._fh.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._fh.flush()  # in the OS's hands: survives the process being killed

    def order(self, venue, co) -> None:
        self._write(
            {
                "k": "order",
                "v": venue.cfg.name,
                "m": co.member.name,
                "cl": co.cl_ord_id,
                "oid": co.order_id,
                "sym": co.symbol,
                "side": co.side,
                "qty": co.qty,
                "px": co.price,
                "acct": co.account,
                "cum": co.cum,
                "notional": co.notional,
                "status": co.status,
                "ids": venue.ids,
            }
        )

    def fill(self, venue, co, qty: int, px: float) -> None:
        self._write(
            {
                "k": "fill",
                "v": venue.cfg.name,
                "m": co.member.name,
                "cl": co.cl_ord_id,
                "sym": co.symbol,
                "side": co.side,
                "qty": qty,
                "px": px,
                "ids": venue.ids,
            }
        )

    def restore(self, venue, client_order) -> list:
        """Put `venue`'s recorded orders and fills back, each under the client that traded; returns the
        orders that were resting. A client the venue no longer serves is an error naming it."""
        latest: dict[str, dict] = {}
        for r in self.records:
            if r["v"] != venue.cfg.name:
                continue
            venue.ids = max(venue.ids, r["ids"])
            if r["k"] == "fill":
                self._member(venue, r).fills.append((r["cl"], r["sym"], r["side"], r["qty"], r["px"]))
            else:
                latest[r["oid"]] = r
        resting = []
        for r in latest.values():
            member = self._member(venue, r)
            co = client_order(r["cl"], r["oid"], r["sym"], r["side"], r["qty"], r["px"], r["acct"], None, member)
            co.cum, co.notional, co.status = r["cum"], r["notional"], r["status"]
            member.orders[co.cl_ord_id] = co
            venue.by_order_id[co.order_id] = co
            if co.status in ("0", "1"):
                resting.append(co)
        return resting

    def _member(self, venue, record: dict):
        name = record.get("m", "XMC")
        if name not in venue.members:
            raise ValueError(
                f"{self.path}: {venue.cfg.name} has orders of client {name!r}, which this venue no "
                f"longer serves: start it with --client {name} (or remove the directory to start "
                f"afresh)"
            )
        return venue.members[name]
