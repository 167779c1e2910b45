"""Two FIX clients (CLIENT1, CLIENT2) of one `xmc venue`, in one quickfix initiator, for the multi-client
test: both subscribe to market data, CLIENT1 rests a buy at the middle of the snapshot's spread,
CLIENT2 sells into it with the same ClOrdID, then CLIENT1 asks for all its orders (AF).
Prints one JSON line: the application messages each client received.
Usage: python tests/helpers/two_clients.py PORT VENUE_COMP_ID DICTIONARY_XML SYMBOL ACCOUNT TICK
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading

import quickfix as fix

CLIENTS = ("CLIENT1", "CLIENT2")


def fields(raw: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in raw.split("\x01")[:-1]:
        tag, _, value = part.partition("=")
        out.setdefault(tag, value)
    return out


class Clients(fix.Application):
    def __init__(self, symbol: str, account: str, tick: float):
        super().__init__()
        self.symbol, self.account, self.tick = symbol, account, tick
        self.sids: dict[str, fix.SessionID] = {}
        self.received: dict[str, list[dict]] = {c: [] for c in CLIENTS}
        self.up: set[str] = set()
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.price = None

    def onCreate(self, sid):
        self.sids[sid.getSenderCompID().getValue()] = sid

    def onLogon(self, sid):
        with self.lock:
            self.up.add(sid.getSenderCompID().getValue())
            if len(self.up) == len(CLIENTS):
                for c in CLIENTS:
                    self.send(c, "V", [(262, f"MD-{c}"), (263, "1"), (264, "1"), (265, "1")], md=True)

    def onLogout(self, sid):
        pass

    def toAdmin(self, m, sid):
        pass

    def fromAdmin(self, m, sid):
        pass

    def toApp(self, m, sid):
        pass

    def send(self, client: str, msg_type: str, body: list, md: bool = False) -> None:
        m = fix.Message()
        m.getHeader().setField(35, msg_type)
        for tag, value in body:
            m.setField(tag, value)
        if md:
            for t in ("0", "1"):
                g = fix.Group(267, 269)
                g.setField(269, t)
                m.addGroup(g)
            g = fix.Group(146, 55)
            g.setField(55, self.symbol)
            m.addGroup(g)
        fix.Session.sendToTarget(m, self.sids[client])

    def order(self, client: str, side: str, price: float) -> None:
        self.send(
            client,
            "D",
            [
                (11, "ORDER-1"),
                (1, self.account),
                (55, self.symbol),
                (54, side),
                (60, "20260105-01:00:00.000"),
                (38, "2"),
                (40, "2"),
                (44, f"{price:.4f}"),
                (59, "0"),
                (20001, "2"),
            ],
        )  # HedgeFlag: the SHFE dictionary requires it

    def fromApp(self, m, sid):
        client = sid.getSenderCompID().getValue()
        f = fields(m.toString())
        with self.lock:
            self.received[client].append(f)
            if client == "CLIENT1" and f["35"] == "W" and self.price is None:
                top, kind = {}, None
                for part in m.toString().split("\x01")[:-1]:
                    tag, _, value = part.partition("=")
                    if tag == "269":
                        kind = value
                    elif tag == "270":
                        top[kind] = float(value)
                bid, ask = top["0"], top["1"]
                self.price = round((bid + ask) / 2 / self.tick) * self.tick
                self.order("CLIENT1", "1", self.price)
            elif client == "CLIENT1" and f["35"] == "8" and f.get("150") == "0":
                self.order("CLIENT2", "2", self.price)  # same ClOrdID, another client: no clash
            elif client == "CLIENT1" and f["35"] == "8" and f.get("150") == "F":
                self.send("CLIENT1", "AF", [(584, "MS-1"), (585, "7")])
            got = self.received
            if any(m.get("584") == "MS-1" and m.get("912") == "Y" for m in got["CLIENT1"]) and any(
                m["35"] == "8" and m.get("150") == "F" for m in got["CLIENT2"]
            ):
                self.done.set()  # both fills and the mass status, whatever order the two sockets delivered


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="xmc-two-clients-") as store:  # removed when the clients end
        return clients(store)


def clients(store: str) -> int:
    port, venue, dd, symbol, account, tick = sys.argv[1:7]
    lines = [
        "[DEFAULT]",
        "ConnectionType=initiator",
        "HeartBtInt=30",
        "ReconnectInterval=1",
        f"FileStorePath={store}",
        "StartTime=00:00:00",
        "EndTime=00:00:00",
        "ResetOnLogon=Y",
        "UseDataDictionary=Y",
        f"DataDictionary={dd}",
        "ValidateUserDefinedFields=N",
        "AllowUnknownMsgFields=Y",
    ]
    for c in CLIENTS:
        lines += [
            "",
            "[SESSION]",
            "BeginString=FIX.4.4",
            f"SenderCompID={c}",
            f"TargetCompID={venue}",
            "SocketConnectHost=127.0.0.1",
            f"SocketConnectPort={port}",
        ]
    ss = fix.SessionSettings()
    ss.setFromString("\n".join(lines) + "\n")
    app = Clients(symbol, account, float(tick))
    init = fix.SocketInitiator(app, fix.MemoryStoreFactory(), ss, fix.ScreenLogFactory(False, False, False))
    init.start()
    finished = app.done.wait(30)
    with app.lock:
        print(json.dumps({"finished": finished, "price": app.price, "received": app.received}), flush=True)
    init.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
