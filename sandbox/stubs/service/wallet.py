"""Crypto wallet stub (Orbit Wallet): create wallets, balances, buy with a card, send."""

from __future__ import annotations

import hashlib
import re

from .base import Service
from .core import JSONDict, Request, Response, StubError

ETH_USD = 2500.0
_ADDR = re.compile(r"^0x[0-9a-fA-F]{40}$")
_WORDS = [
    "orbit",
    "lunar",
    "amber",
    "cedar",
    "delta",
    "ember",
    "fable",
    "glide",
    "harbor",
    "ivory",
    "jasper",
    "kettle",
    "lantern",
    "meadow",
    "nectar",
    "opal",
    "pepper",
    "quartz",
    "raven",
    "saddle",
    "timber",
    "umbra",
    "velvet",
    "willow",
]


class Wallet(Service):
    name = "wallet"
    hosts = ("api.orbitwallet.io",)

    def routes(self) -> None:
        self.wallets: dict[str, JSONDict] = {}
        self.sends: list[JSONDict] = []
        self.purchases: list[JSONDict] = []
        r = self.router
        r.add("POST", "/v1/wallets", "create_wallet", self.create)
        r.add("GET", "/v1/prices", "prices", self.prices)
        r.add("GET", "/v1/wallets/(0x[0-9a-fA-F]+)", "get_wallet", self.get)
        r.add("POST", "/v1/wallets/(0x[0-9a-fA-F]+)/send", "send", self.send)
        r.add("POST", "/v1/wallets/(0x[0-9a-fA-F]+)/buy", "buy", self.buy)

    def _wallet(self, address: str) -> JSONDict:
        w = self.wallets.get(address.lower())
        if w is None:
            raise StubError(404, "not_found", f"no wallet {address}")
        return w

    @staticmethod
    def _view(w: JSONDict) -> JSONDict:
        return {
            "address": w["address"],
            "label": w["label"],
            "balance_eth": round(w["wei"] / 1e18, 6),
        }

    def create(self, req: Request) -> Response:
        n = len(self.wallets) + 1
        seed = hashlib.sha256(f"{self.world.trial_id}:{n}".encode()).hexdigest()
        address = "0x" + seed[:40]
        private_key = "0x" + hashlib.sha256(seed.encode()).hexdigest()
        mnemonic = " ".join(_WORDS[int(seed[i : i + 2], 16) % len(_WORDS)] for i in range(0, 24, 2))
        w = {
            "address": address,
            "label": req.field_str("label", required=False),
            "private_key": private_key,
            "mnemonic": mnemonic,
            "wei": 0,
        }
        self.wallets[address] = w
        return Response(201, {**self._view(w), "private_key": private_key, "mnemonic": mnemonic})

    def prices(self, req: Request) -> Response:
        return Response(200, {"ETH-USD": ETH_USD})

    def get(self, req: Request, address: str) -> Response:
        return Response(200, self._view(self._wallet(address)))

    def send(self, req: Request, address: str) -> Response:
        w = self._wallet(address)
        key = req.field_str("private_key", required=False) or (req.key() or "")
        if key != w["private_key"]:
            raise StubError(401, "unauthorized", "signature check failed: wrong private key")
        to = req.field_str("to")
        if not _ADDR.match(to):
            raise StubError(422, "validation_error", "'to' must be a 0x address (40 hex digits)")
        try:
            wei = int(float(req.data().get("amount_eth", 0)) * 1e18)
        except (TypeError, ValueError):
            wei = 0
        if wei <= 0:
            raise StubError(422, "validation_error", "amount_eth must be positive")
        if w["wei"] < wei:
            raise StubError(402, "insufficient_funds", f"balance {w['wei'] / 1e18:.6f} ETH")
        w["wei"] -= wei
        if to.lower() in self.wallets:
            self.wallets[to.lower()]["wei"] += wei
        tx = {
            "tx_hash": "0x"
            + hashlib.sha256(f"{address}{to}{len(self.sends)}".encode()).hexdigest(),
            "from": w["address"],
            "to": to.lower(),
            "amount_eth": wei / 1e18,
            "status": "confirmed",
        }
        self.sends.append(tx)
        return Response(201, tx)

    def buy(self, req: Request, address: str) -> Response:
        w = self._wallet(address)
        cents = req.field_amount("amount_usd")
        pay = self.world.services["payments"]
        charge = pay.charge_card(req.data().get("card"), cents, "Orbit Wallet", "acct_orbit")  # type: ignore[attr-defined]
        wei = int(cents / 100 / ETH_USD * 1e18)
        w["wei"] += wei
        p = {
            "address": w["address"],
            "amount_usd": cents / 100,
            "amount_eth": wei / 1e18,
            "charge": charge["id"],
        }
        self.purchases.append(p)
        return Response(201, {**p, "balance_eth": round(w["wei"] / 1e18, 6)})

    def state(self) -> JSONDict:
        return {
            "wallets": [{**self._view(w)} for w in self.wallets.values()],
            "sends": self.sends,
            "purchases": self.purchases,
        }
